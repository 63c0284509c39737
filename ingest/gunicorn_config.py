"""gunicorn settings for the ingest (`refund-sink ingest` uses them):
`gunicorn -c python:ingest.gunicorn_config "ingest:create_app()"`."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

graceful_timeout = 20


def child_exit(_server: Any, worker: Any) -> None:
    """Drop a finished worker's live gauges from the shared metrics directory."""
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
