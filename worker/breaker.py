"""The database circuit breaker: a worker stops taking messages off the queue while the
database does not answer, and takes them again once it does.

Without it every message fetched during an outage fails, is retried and fails again, and the
queue churns through the workers for nothing. The breaker runs in each worker's main process
(where the consumer lives): a thread probes the database every few seconds; after
`OPEN_AFTER` failed probes it cancels the consumer of the sink's queue, and the first probe
that answers adds it back. Messages already fetched still run; their attempts that fail
while the database is away are held, not counted (worker.handling.held_for_database).
The consumer's own `call_soon` (what Celery's `cancel_consumer` and `add_consumer` control
commands use) runs each change on the worker's event loop, not on this thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import signals
from prometheus_client import Gauge

from refunds.db import database_answers
from refunds.logs import event
from refunds.settings import Settings

log = logging.getLogger("refund_sink.worker")
PROBE_SECONDS = 2.0
OPEN_AFTER = 2  # failed probes in a row: one lost connection is not an outage
BREAKER_OPEN = Gauge("refund_sink_database_breaker_open",
                     "1 while this worker has stopped fetching because the database is away",
                     multiprocess_mode="livemax")


class DatabaseBreaker:
    def __init__(self, settings: Settings, probe: Callable[[], bool] | None = None):
        self.queue = settings.queue
        self.probe = probe or (lambda: database_answers(settings))
        self.failures = 0
        self.open = False
        self._stopped = threading.Event()

    def start(self, consumer: Any) -> None:
        threading.Thread(target=self._run, args=(consumer,), name="database-breaker",
                         daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self, consumer: Any) -> None:
        while not self._stopped.wait(PROBE_SECONDS):
            self.check(consumer)

    def check(self, consumer: Any) -> None:
        """One probe, and the change it calls for, if any."""
        if self.probe():
            self.failures = 0
            if self.open:
                consumer.call_soon(consumer.add_task_queue, self.queue)
                self._set(False, "database back: fetching resumed")
            return
        self.failures += 1
        if not self.open and self.failures >= OPEN_AFTER:
            consumer.call_soon(consumer.cancel_task_queue, self.queue)
            self._set(True, "database unreachable: fetching paused")

    def _set(self, open_: bool, what: str) -> None:
        self.open = open_
        BREAKER_OPEN.set(1 if open_ else 0)
        event(log, what, logging.WARNING, queue=self.queue)


def install(settings: Settings) -> None:
    """Break from every worker's main process while it runs; not from Flower or the ingest."""
    breaker = DatabaseBreaker(settings)

    def on_ready(sender: Any = None, **_kwargs: Any) -> None:
        breaker.start(sender)  # Celery sends worker_ready with the consumer as sender

    def on_shutdown(**_kwargs: Any) -> None:
        breaker.stop()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
