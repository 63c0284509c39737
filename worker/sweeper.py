"""The ledger's sweeper: publishes again an accepted delivery whose queue message is gone.

Each worker's main process runs one in a thread; a Redis lock lets one sweep at a time. An
entry is published again, under its own message id, when it is older than the visibility
timeout (by then its message is queued, held unacked by a worker, or settled), its message
is neither on the queue nor in the unacked hash, and the database records no fate for it.
The reads go queue, unacked hash, database, the way a message moves: a message is seen at
one of them, except inside kombu's own fetch and restore windows, where the extra copy is a
duplicate the dedupe absorbs."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import Any

import redis
from celery import Celery, signals
from redis.exceptions import LockError

from refunds import metrics
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.queries import settled_deliveries
from refunds.settings import Settings
from worker.celery_app import make_celery
from worker.ledger import Ledger
from worker.publish import Publisher

log = logging.getLogger("refund_sink.worker")
ENTRIES_PER_SWEEP = 500
# A longer queue is not scanned: its messages are old because they wait, and reading it all
# every sweep would cost more than the rare lost message; the sweep waits for it to shrink.
MAX_SCANNED_QUEUE = 2_000
LOCK_SECONDS = 30  # a sweep takes well under a second; a killed sweeper blocks no longer


class Sweeper:
    def __init__(self, settings: Settings, celery: Celery):
        self.settings = settings
        self.ledger = Ledger(settings)
        self.publisher = Publisher(celery, self.ledger)
        self.every = min(30.0, max(1.0, settings.visibility_timeout / 10))
        self.queue_key = settings.redis_key_prefix + settings.queue
        self.unacked_key = settings.redis_key_prefix + "unacked"
        self._stopped = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="ledger-sweeper", daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.every):
            try:
                self.sweep()
            except Exception as error:  # Redis or the database away: the next sweep retries
                log.warning("ledger sweep failed (%s: %s)", type(error).__name__, error)

    def sweep(self) -> int:
        """One pass, if no other worker is sweeping; returns how many were published again."""
        lock = self.ledger.client.lock(self.ledger.sweep_lock_name, timeout=LOCK_SECONDS,
                                       blocking=False)
        if not lock.acquire():
            return 0
        try:
            return self._sweep()
        finally:
            with contextlib.suppress(LockError, redis.RedisError):  # else it expires
                lock.release()

    def _sweep(self) -> int:
        cutoff = time.time() - self.settings.visibility_timeout
        entries = self.ledger.recorded_before(cutoff, ENTRIES_PER_SWEEP)
        if not entries:
            return 0
        on_queue = self._queued_ids()
        if on_queue is None:
            log.info("ledger sweep deferred: the queue is longer than %d", MAX_SCANNED_QUEUE)
            return 0
        in_flight = on_queue | self._unacked_ids()
        missing = self._deliveries({i: w for i, w in entries.items() if i not in in_flight})
        with session_factory(self.settings)() as session:
            settled = settled_deliveries({d.delivery_id for d in missing.values()},
                                         session=session)
        self.ledger.settle(i for i, d in missing.items() if d.delivery_id in settled)
        lost = {i: d for i, d in missing.items() if d.delivery_id not in settled}
        for message_id, delivery in lost.items():
            self.publisher.publish(delivery, message_id)
            metrics.REPUBLISHED.inc()
            event(log, "delivery republished", logging.WARNING, delivery_id=delivery.delivery_id,
                  message_id=message_id, shop=delivery.shop)
        return len(lost)

    def _queued_ids(self) -> set[str | None] | None:
        client = self.ledger.client
        if int(client.llen(self.queue_key)) > MAX_SCANNED_QUEUE:
            return None
        return {_message_id(raw) for raw in client.lrange(self.queue_key, 0, -1)}

    def _unacked_ids(self) -> set[str | None]:
        """kombu keeps [message, exchange, routing key] per delivery tag."""
        return {_message_id(raw, held=True) for raw in self.ledger.client.hvals(self.unacked_key)}

    def _deliveries(self, wires: dict[str, str]) -> dict[str, RawDelivery]:
        """Entries decoded; one that does not decode could never be applied: it is dropped,
        loudly."""
        found = {}
        for message_id, wire in wires.items():
            try:
                found[message_id] = RawDelivery.from_wire(json.loads(wire))
            except ValueError as error:  # bad JSON, or MalformedDelivery
                log.error("dropping ledger entry %s: not a delivery (%s)", message_id, error)
                self.ledger.settle([message_id])
        return found


def _message_id(raw: str | bytes, held: bool = False) -> str | None:
    """The task id of a kombu message as it sits in Redis (Celery's message protocol 2);
    None for anything else on the queue, which must not stop the sweep."""
    try:
        message = json.loads(raw)
        message = message[0] if held else message
        return str(message["headers"]["id"])
    except (ValueError, LookupError, TypeError):
        return None


def install(settings: Settings) -> None:
    """Sweep from every worker's main process while it runs; not from Flower or the ingest.
    The sweeper publishes through an app of its own: the worker's connections belong to its
    event loop."""
    sweeper = Sweeper(settings, make_celery(settings))

    def on_ready(**_kwargs: Any) -> None:
        sweeper.start()

    def on_shutdown(**_kwargs: Any) -> None:
        sweeper.stop()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
