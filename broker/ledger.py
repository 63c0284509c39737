"""The ledger of accepted deliveries: every task message the sink has published and not yet
settled (applied, found a duplicate, or dead-lettered), kept in Redis beside the queue, one
ledger per queue (`broker.keys`).

Why: kombu's Redis transport pops a message (`BRPOP`) before it records it as unacknowledged;
a worker whose main process is killed in between loses the message, and Redis holds no other
copy (celery#7950, kombu#305). The ledger is that other copy: the message exactly as queued,
keyed by its task message id (a redelivery and a retry keep the id; a requeue from the dead
letters is a new message), written with the publish itself (`broker.transport`). The sweeper
(`worker.sweeper`) puts back an entry that is old, not settled, and neither queued nor held
by a worker."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker import keys
from broker.redis_client import redis_client
from refunds.settings import Settings


class Ledger:
    def __init__(self, settings: Settings):
        # One retry, at once, covers a pooled connection that Redis closed on restart; more
        # would only delay the ingest's move to the spool while Redis is down.
        self.client = redis_client(settings, timeout=5, retry=Retry(NoBackoff(), 1),
                                   decode_responses=True)
        self.entries = keys.scoped(settings, keys.LEDGER)
        self.recorded_at = keys.scoped(settings, keys.RECORDED_AT)
        self.sweep_lock_name = keys.scoped(settings, keys.SWEEP_LOCK)

    def put_back(self, message_id: str, message: str, queue_key: str) -> None:
        """The message onto the queue again, as kombu restores one, and its entry's time
        renewed: one `MULTI`."""
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.recorded_at, {message_id: time.time()})
        pipe.lpush(queue_key, message)
        pipe.execute()

    def settle(self, message_ids: Iterable[str]) -> None:
        """After the effect or the dead letter is committed. A failure leaves the entries to
        the sweeper, which finds them settled in the database."""
        ids = list(message_ids)
        if not ids:
            return
        with contextlib.suppress(redis.RedisError):
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self.entries, *ids)
            pipe.zrem(self.recorded_at, *ids)
            pipe.execute()

    def recorded_before(self, cutoff: float, limit: int) -> dict[str, tuple[float, str]]:
        """The oldest entries recorded (or last put back) before `cutoff`: message id to
        (when, as a Unix time; the queued message as stored)."""
        oldest: list[Any] = self.client.zrangebyscore(self.recorded_at, "-inf", cutoff, start=0,
                                                      num=limit, withscores=True)
        times = {str(message_id): float(score) for message_id, score in oldest}
        if not times:
            return {}
        ids = list(times)
        messages = dict(zip(ids, self.client.hmget(self.entries, ids), strict=True))
        # settled between the two reads, or a half-written entry: nothing to put back
        self.settle(message_id for message_id, message in messages.items() if not message)
        return {message_id: (times[message_id], str(message))
                for message_id, message in messages.items() if message}

    def size(self) -> int:
        return int(self.client.zcard(self.recorded_at))

    def oldest(self) -> float | None:
        """When the oldest entry was recorded (or last put back), as a Unix time."""
        first = self.client.zrange(self.recorded_at, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

