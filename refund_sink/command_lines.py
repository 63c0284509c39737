"""The command lines of the sink's long-running processes (the ingest under gunicorn, a Celery
worker) and the environment they share metrics through: `refund-sink ingest|worker` run them
in the foreground, `refund-sink run` as its children."""

from __future__ import annotations

import os
import sys
import tempfile

from refunds.settings import Settings


def gunicorn_command(bind: str, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn",
        "--config", "python:ingest.gunicorn_config",
        "--bind", bind,
        "--workers", str(workers),
        "ingest:create_app()",
    ]


def with_metrics_dir(env: dict[str, str]) -> dict[str, str]:
    """gunicorn's or Celery's processes count into one fresh directory so a scrape sees their
    sum. Set before the process starts: Celery's command line imports prometheus_client
    (through Flower's plug-in) before the app could set it."""
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        env = {**env, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="refund-sink-metrics-")}
    return env


def worker_command(settings: Settings, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "celery", "-A", "worker", "worker",
        # No broadcast chatter between workers: not needed here, and implicated in workers
        # that stopped consuming after a broker reconnect.
        "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
        "--concurrency", str(concurrency),
        "--queues", settings.queue,
        "--hostname", f"refund-sink-{os.getpid()}@%h",
    ]
