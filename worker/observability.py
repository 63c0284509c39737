"""The worker's logs, metrics endpoint and liveness heartbeat, wired to Celery's signals."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from celery import signals

from refunds import logs
from refunds.settings import Settings

log = logging.getLogger("refund_sink.worker")


def prepare_metrics_dir() -> None:
    """Pool processes count into files here; the main process serves their sum. Must run
    before prometheus_client is first imported, which Celery's command line already does
    (Flower's plug-in): `refund-sink worker` sets the directory before Celery starts, and
    this covers other ways of loading the app."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="refund-sink-metrics-")


def install(settings: Settings) -> None:
    if "flower" in sys.argv[1:]:  # `celery -A worker flower` loads this app too
        read_only_flower()
    heartbeat = Path(settings.heartbeat_file)

    def configure_logging(**_kwargs: Any) -> None:
        logs.configure(force=True)

    def on_ready(**_kwargs: Any) -> None:
        if settings.metrics_port:
            _start_metrics_server(settings.metrics_port)
        _touch(heartbeat)

    def on_heartbeat(**_kwargs: Any) -> None:
        _touch(heartbeat)

    # Connecting to setup_logging also stops Celery from configuring logging itself.
    signals.setup_logging.connect(configure_logging, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.heartbeat_sent.connect(on_heartbeat, weak=False)


def _touch(heartbeat: Path) -> None:
    """Creates the file's directory the first time (a fresh volume, a new temp path)."""
    try:
        heartbeat.touch()
    except FileNotFoundError:
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
        heartbeat.touch()


# Flower's API routes that act on tasks or workers; removed so Flower only observes.
ACTING_ROUTES = re.compile(r"^/api/(task/(apply|async-apply|send-task|abort|timeout|rate-limit"
                           r"|revoke)|worker/(shutdown|pool|queue))/")


def read_only_flower() -> None:
    """Strip Flower's task-apply and worker-control endpoints before its app is built: a
    leaked Flower password must not let anyone inject refunds or stop workers."""
    from flower import urls

    urls.handlers[:] = [handler for handler in urls.handlers
                        if not ACTING_ROUTES.match(_pattern(handler))]


def _pattern(handler: Any) -> str:
    return str(handler[0] if isinstance(handler, tuple) else handler.regex.pattern)


def _start_metrics_server(port: int) -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    try:
        start_http_server(port, registry=registry)
    except OSError as error:
        log.warning("metrics port %d unavailable (%s); worker metrics not served", port, error)
        return
    log.info("worker metrics on port %d", port)
