"""Putting a raw delivery on the queue; used by the ingest, the spool, dead-letter requeues and
the reconcile. The ledger entry travels with it (`broker.transport.put_recorded`).

The message is the one `app.send_task` would build (`broker.envelope`), written by the
transport's own script through a Redis client of a kombu channel of the app's, opened once
per app and kept: the same connection settings, key prefix, Sentinel master discovery and
replica confirmation as a publish through Celery, without Celery's and kombu's per-publish
work."""

from __future__ import annotations

import threading
import weakref

from celery import Celery

from broker.envelope import Envelope, Prepared, display
from broker.group_commit import GroupCommit
from broker.transport import Recorder, recorder
from refunds.delivery import RawDelivery

__all__ = ["Publisher", "display", "publish", "publisher"]

# Round trips one publisher runs at once; more publishes wait and go together in the next.
# At most kombu's connections per channel pool (`max_connections`, 10), or redis-py refuses
# the eleventh ("Too many connections"). Measured (docs/performance.md, issue 15): 1 costs
# the least CPU per delivery but adds a round trip of waiting to p99 at moderate rates; 4
# keeps S2's p99 and most of the saving.
WRITE_SLOTS = 4


def publish(app: Celery, delivery: RawDelivery) -> str:
    """Fail fast (no publish retries): the caller spools the delivery or answers 503. Returns
    the task message id. Raises what the connection raises (redis-py's or kombu's errors), or
    `broker.transport.NotReplicated`."""
    return publisher(app).publish(delivery)


_publishers: weakref.WeakKeyDictionary[Celery, Publisher] = weakref.WeakKeyDictionary()
_publishers_lock = threading.Lock()


def publisher(app: Celery) -> Publisher:
    """The app's publisher, made on first use."""
    with _publishers_lock:
        found = _publishers.get(app)
        if found is None:
            found = _publishers[app] = Publisher(app)
        return found


class Publisher:
    """Prepared task messages onto the app's queue, grouped: threads publishing at the same
    moment share round trips (`broker.group_commit`), at most `WRITE_SLOTS` at once."""

    def __init__(self, app: Celery):
        self.app = app
        self.envelope = Envelope(app)
        self._lock = threading.Lock()
        self._recorder: Recorder | None = None
        self._group: GroupCommit[Prepared] = GroupCommit(self._write, slots=WRITE_SLOTS)

    def publish(self, delivery: RawDelivery) -> str:
        """Returns once the message is queued with its ledger entry (raises otherwise)."""
        prepared = self.envelope.prepare(delivery)
        self._group.submit(prepared)
        return prepared.message_id

    def _write(self, prepared: list[Prepared]) -> None:
        self._connect().put([(message.message_id, message.payload) for message in prepared])

    def _connect(self) -> Recorder:
        """The app's channel, opened on first use (or after a failed first use: Redis down
        then raises here, within the app's broker connection timeout)."""
        found = self._recorder
        if found is not None:
            return found
        opened = recorder(self.app, self.envelope.queue)
        with self._lock:
            if self._recorder is None:
                self._recorder = opened
                return opened
            kept = self._recorder
        opened.close()  # another thread's came first
        return kept
