"""Long-running commands: `run` (everything, embedded), `ingest` (gunicorn), `worker` (Celery)."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from broker.redis_client import redis_client
from ingest import gunicorn_config
from refund_sink import arguments
from refund_sink.command_lines import gunicorn_command, with_metrics_dir, worker_command
from refund_sink.servers import ServerError
from refunds.settings import Settings


def add_commands(commands: Any) -> None:
    run = commands.add_parser("run", help="the whole sink on this machine, embedded defaults")
    run.add_argument("--port", type=arguments.port, default=8080)
    run.add_argument("--host", default="127.0.0.1")
    run.set_defaults(handler=run_embedded)

    ingest = commands.add_parser("ingest", help="the ingest app under gunicorn")
    ingest.add_argument("--bind", type=arguments.bind, default="0.0.0.0:8080",
                        help="HOST:PORT")
    ingest.add_argument("--workers", type=arguments.at_least_one,
                        default=gunicorn_config.default_workers(),
                        help="gunicorn worker processes (default: two per core, at most 8)")
    ingest.set_defaults(handler=run_ingest)

    worker = commands.add_parser("worker",
                                 help="a Celery worker (task events while Flower watches)")
    worker.add_argument("--concurrency", type=arguments.at_least_one, default=2)
    worker.set_defaults(handler=run_worker)

    alive = commands.add_parser("worker-alive", help="exit 0 if this host's workers are alive "
                                "(each one's heartbeat file is fresh): a cheap liveness probe")
    alive.add_argument("--max-age", type=arguments.seconds, default=60.0, help="seconds")
    alive.add_argument("--pid", type=arguments.at_least_one,
                       help="only the worker whose main process this is (default: every "
                       "worker with a heartbeat on this host)")
    alive.set_defaults(handler=worker_alive)


def run_ingest(args: argparse.Namespace) -> int:
    Settings.from_env().require_webhook_secret()
    command = gunicorn_command(args.bind, args.workers)
    os.execve(command[0], command, with_metrics_dir(dict(os.environ)))
    return 0  # pragma: no cover - execv does not return


def run_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    redis_client(settings, timeout=2).ping()  # a redis:// or sentinel:// REDIS_URL
    command = worker_command(settings, args.concurrency)
    os.execve(command[0], command, with_metrics_dir(dict(os.environ)))
    return 0  # pragma: no cover


def worker_alive(args: argparse.Namespace) -> int:
    """Every worker that keeps a heartbeat on this host (or the one `--pid` names) beat
    within `--max-age`. A worker that stops cleanly removes its file; one killed outright
    leaves it, and is reported until the file is removed."""
    from worker.observability import heartbeats

    directory = Settings.from_env().heartbeat_dir
    found = heartbeats(directory)
    if args.pid is not None:
        found = {pid: path for pid, path in found.items() if pid == args.pid}
    if not found:
        which = f"of worker pid {args.pid} " if args.pid is not None else ""
        raise ServerError(f"no worker heartbeat {which}in {directory}")
    for pid, heartbeat in sorted(found.items()):
        try:
            age = time.time() - heartbeat.stat().st_mtime
        except FileNotFoundError:  # stopped cleanly since the listing
            raise ServerError(f"worker pid {pid} has stopped") from None
        if age > args.max_age:
            raise ServerError(f"worker pid {pid}: heartbeat is {age:.0f}s old "
                              f"(limit {args.max_age:.0f}s; {heartbeat})")
    return 0


def run_embedded(args: argparse.Namespace) -> int:
    from refund_sink.embedded import EmbeddedSink

    return EmbeddedSink(host=args.host, port=args.port).run()
