"""The ledger's sweeper: puts back on the queue an accepted delivery whose message is gone.

Each worker's main process runs one in a thread; a Redis lock lets one sweep at a time. An
entry's stored message goes back on the queue (as kombu restores one: same message, same
id) when the entry is older than the visibility timeout (by then its message is queued,
held unacked by a worker, or settled), its message is neither on the queue nor in the
unacked hash, and the database records no fate for that copy.
The queue and the unacked hash are read in one Lua script (one snapshot, and only message
ids leave Redis), then the database: the way a message moves, so a message is seen at one
of them, except inside kombu's own fetch and restore windows and Celery's retry-then-ack,
where the extra copy is a duplicate the dedupe absorbs."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import signals
from redis.exceptions import LockError
from redis.lock import Lock

from broker.ledger import Ledger
from broker.wire import delivery_of
from refunds import metrics
from refunds.db import describe, session_factory
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.queries import settled_copies
from refunds.settings import Settings

log = logging.getLogger("refund_sink.worker")
ENTRIES_PER_SWEEP = 500
# A longer queue is not scanned: its messages are old because they wait, and reading it all
# every sweep would cost more than the rare lost message; the sweep waits for it to shrink.
# The scan runs in Redis (about 25 ms for 1,000 messages of 4 kB), and only while an entry
# is older than the visibility timeout.
MAX_SCANNED_QUEUE = 1_000
# A sweeper killed mid-sweep blocks others this long. One whose sweep outlasts it (a slow
# database) finds the lock gone before putting anything back, and puts back nothing.
LOCK_SECONDS = 60
# The task ids of the messages on the queue (KEYS[1]) and held unacked (KEYS[2], kombu's
# [message, exchange, routing key] per delivery tag); nil when the queue is longer than
# ARGV[1]. Anything that is not a kombu message is skipped.
IN_FLIGHT = """
if redis.call('LLEN', KEYS[1]) > tonumber(ARGV[1]) then return false end
local ids = {}
local function add(raw, held)
  local ok, decoded = pcall(cjson.decode, raw)
  if not ok or type(decoded) ~= 'table' then return end
  local message = decoded
  if held then message = decoded[1] end
  if type(message) == 'table' and type(message.headers) == 'table'
      and type(message.headers.id) == 'string' then
    ids[#ids + 1] = message.headers.id
  end
end
for _, raw in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do add(raw, false) end
for _, raw in ipairs(redis.call('HVALS', KEYS[2])) do add(raw, true) end
return ids
"""


class Sweeper:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.ledger = Ledger(settings)
        self.every = min(30.0, max(1.0, settings.visibility_timeout / 10))
        self.queue_key = settings.redis_key_prefix + settings.queue
        self.unacked_key = settings.redis_key_prefix + "unacked"
        self._in_flight = self.ledger.client.register_script(IN_FLIGHT)
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
                log.warning("ledger sweep failed (%s)", describe(error))

    def sweep(self) -> int:
        """One pass, if no other worker is sweeping; returns how many were put back."""
        lock = self.ledger.client.lock(self.ledger.sweep_lock_name, timeout=LOCK_SECONDS,
                                       blocking=False)
        if not lock.acquire():
            return 0
        try:
            return self._sweep(lock)
        finally:
            with contextlib.suppress(LockError, redis.RedisError):  # else it expires
                lock.release()

    def _sweep(self, lock: Lock) -> int:
        cutoff = time.time() - self.settings.visibility_timeout
        entries = self.ledger.recorded_before(cutoff, ENTRIES_PER_SWEEP)
        if not entries:
            return 0
        in_flight = self._in_flight(keys=[self.queue_key, self.unacked_key],
                                    args=[MAX_SCANNED_QUEUE])
        if in_flight is None:
            log.info("ledger sweep deferred: the queue is longer than %d", MAX_SCANNED_QUEUE)
            return 0
        in_flight = set(in_flight)
        missing = self._decoded({i: e for i, e in entries.items() if i not in in_flight})
        with session_factory(self.settings)() as session:
            settled = settled_copies(
                {i: (entry.delivery, entry.published_at)
                 for i, entry in missing.items()}, session=session)
        self.ledger.settle(settled)
        lost = {i: entry for i, entry in missing.items() if i not in settled}
        if lost and not lock.owned():
            log.warning("ledger sweep took longer than its lock; leaving %d to the next sweep",
                        len(lost))
            return 0
        for message_id, entry in lost.items():
            self.ledger.put_back(message_id, entry.message, self.queue_key)
            metrics.REPUBLISHED.inc()
            event(log, "delivery republished", logging.WARNING,
                  delivery_id=entry.delivery.delivery_id, message_id=message_id,
                  shop=entry.delivery.shop)
        return len(lost)

    def _decoded(self, entries: dict[str, tuple[float, str]]) -> dict[str, Entry]:
        """Entries decoded; one that does not decode could never be applied: it is dropped,
        loudly."""
        found = {}
        for message_id, (recorded_at, message) in entries.items():
            try:
                delivery = delivery_of(message)
            except ValueError as error:  # bad JSON, not a delivery, or MalformedDelivery
                log.error("dropping ledger entry %s: %s", message_id, error)
                self.ledger.settle([message_id])
                continue
            found[message_id] = Entry(datetime.fromtimestamp(recorded_at, UTC), delivery,
                                      message)
        return found


@dataclass(frozen=True)
class Entry:
    published_at: datetime
    delivery: RawDelivery
    message: str  # as queued


def install(settings: Settings) -> None:
    """Sweep from every worker's main process while it runs; not from Flower or the ingest.
    The sweeper uses a Redis client of its own: the worker's connections belong to its event
    loop."""
    sweeper = Sweeper(settings)

    def on_ready(**_kwargs: Any) -> None:
        sweeper.start()

    def on_shutdown(**_kwargs: Any) -> None:
        sweeper.stop()

    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
