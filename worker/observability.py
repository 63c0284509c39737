"""The worker's logs, metrics endpoint and liveness heartbeat, wired to Celery's signals."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from celery import signals

from refunds import logs
from refunds.logs import event
from refunds.settings import Settings

log = logging.getLogger("refund_sink.worker")
# Log events `refund-sink run` looks for in its worker's log, to say whether metrics are served.
METRICS_SERVED = "worker metrics served"
METRICS_NOT_SERVED = "worker metrics not served"


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

    def configure_logging(**_kwargs: Any) -> None:
        logs.configure(force=True)

    liveness = Liveness(settings.heartbeat_dir)

    def on_ready(**_kwargs: Any) -> None:
        if settings.metrics_port:
            _start_metrics_server(settings.metrics_port)
        liveness.ready()

    def on_heartbeat(**_kwargs: Any) -> None:
        liveness.beat()

    def on_shutdown(**_kwargs: Any) -> None:
        liveness.stop()

    # Connecting to setup_logging also stops Celery from configuring logging itself.
    signals.setup_logging.connect(configure_logging, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.heartbeat_sent.connect(on_heartbeat, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)


class Liveness:
    """The worker's heartbeat file. Celery sends its first heartbeat (worker-online) before
    worker_ready, while the metrics server is not started yet; `refund-sink run` reads the
    file as "ready, metrics decided", so beats count only once the worker is ready. Each
    call runs in the worker's main process: its pid names the file."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.is_ready = False

    def ready(self) -> None:
        self.is_ready = True
        self.beat()

    def beat(self) -> None:
        if self.is_ready:
            _touch(heartbeat_file(self.directory, os.getpid()))

    def stop(self) -> None:
        heartbeat_file(self.directory, os.getpid()).unlink(missing_ok=True)


def heartbeat_file(directory: str, pid: int) -> Path:
    """The heartbeat of the worker whose main process is `pid` on this host: its own file,
    `<pid>@<host>`, so one worker's beat never stands for another's."""
    return Path(directory) / f"{pid}@{socket.gethostname()}"


def heartbeats(directory: str) -> dict[int, Path]:
    """This host's worker heartbeat files in `directory`, by the worker's pid."""
    host = socket.gethostname()
    try:
        names = [path.name for path in Path(directory).iterdir()]
    except FileNotFoundError:
        return {}
    found = {}
    for name in names:
        pid, at, on = name.partition("@")
        if at and on == host and pid.isdigit():
            found[int(pid)] = Path(directory) / name
    return found


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
        event(log, METRICS_NOT_SERVED, logging.WARNING, port=port,
              error=error.strerror or str(error))
        return
    event(log, METRICS_SERVED, port=port)
