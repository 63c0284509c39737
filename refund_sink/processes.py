"""Long-running commands: `run` (everything, embedded), `ingest` (gunicorn), `worker` (Celery)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import redis

from refunds.settings import Settings


def add_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="the whole sink on this machine, embedded defaults")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--host", default="127.0.0.1")
    run.set_defaults(handler=run_embedded)

    ingest = commands.add_parser("ingest", help="the ingest app under gunicorn")
    ingest.add_argument("--bind", default="0.0.0.0:8080", help="HOST:PORT")
    ingest.add_argument("--workers", type=int, default=2)
    ingest.set_defaults(handler=run_ingest)

    worker = commands.add_parser("worker", help="a Celery worker (task events on, for Flower)")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.set_defaults(handler=run_worker)


def gunicorn_command(bind: str, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--bind", bind,
        "--workers", str(workers),
        "--graceful-timeout", "20",
        "ingest:create_app()",
    ]


def worker_command(settings: Settings, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        "--events",
        # No broadcast chatter between workers: not needed here, and implicated in workers
        # that stopped consuming after a broker reconnect.
        "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
        "--concurrency", str(concurrency),
        "--queues", settings.queue,
        "--hostname", f"refund-sink-{os.getpid()}@%h",
    ]


def run_ingest(args: argparse.Namespace) -> int:
    Settings.from_env().require_webhook_secret()
    command = gunicorn_command(args.bind, args.workers)
    os.execv(command[0], command)
    return 0  # pragma: no cover - execv does not return


def run_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2).ping()
    command = worker_command(settings, args.concurrency)
    os.execv(command[0], command)
    return 0  # pragma: no cover


def run_embedded(args: argparse.Namespace) -> int:
    from refund_sink.embedded import EmbeddedSink

    return EmbeddedSink(host=args.host, port=args.port).run()
