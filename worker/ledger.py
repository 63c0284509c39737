"""The ledger of accepted deliveries: every task message the sink has published and not yet
settled (applied, found a duplicate, or dead-lettered), kept in Redis beside the queue.

Why: kombu's Redis transport pops a message (`BRPOP`) before it records it as unacknowledged;
a worker whose main process is killed in between loses the message, and Redis holds no other
copy (celery#7950, kombu#305). The ledger is that other copy, keyed by the task message id
(a redelivery and a retry keep the id; a requeue from the dead letters is a new message). The
sweeper (`worker.sweeper`) republishes an entry that is old, not settled, and neither queued
nor held by a worker."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from refunds.settings import Settings


class Ledger:
    def __init__(self, settings: Settings):
        # One retry, at once, covers a pooled connection that Redis closed on restart; more
        # would only delay the ingest's move to the spool while Redis is down.
        self.client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2,
                                           socket_timeout=5, retry=Retry(NoBackoff(), 1),
                                           decode_responses=True)
        base = f"{settings.redis_key_prefix}refund-sink:ledger"
        self.entries, self.recorded_at = base, f"{base}:recorded-at"
        self.sweep_lock_name = f"{base}:sweeping"

    def record(self, message_id: str, wire: dict[str, Any]) -> None:
        """Before the message is published: an entry without its message is only republished
        (a duplicate the dedupe absorbs); a message without its entry could be lost. `wire`
        is the delivery's wire form (`RawDelivery.to_wire`)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.entries, message_id, json.dumps(wire))
        pipe.zadd(self.recorded_at, {message_id: time.time()})
        pipe.execute()

    def settle(self, message_ids: Iterable[str]) -> None:
        """After the effect or the dead letter is committed. A failure leaves the entries to
        the sweeper, which finds them settled in the database."""
        ids = list(message_ids)
        if not ids:
            return
        with contextlib.suppress(redis.RedisError):
            self.forget(ids)

    def forget(self, message_ids: list[str]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.entries, *message_ids)
        pipe.zrem(self.recorded_at, *message_ids)
        pipe.execute()

    def recorded_before(self, cutoff: float, limit: int) -> dict[str, tuple[float, str]]:
        """The oldest entries recorded (or last republished) before `cutoff`: message id to
        (when, as a Unix time; the delivery's wire form as stored)."""
        oldest: list[Any] = self.client.zrangebyscore(self.recorded_at, "-inf", cutoff, start=0,
                                                      num=limit, withscores=True)
        times = {str(message_id): float(score) for message_id, score in oldest}
        if not times:
            return {}
        ids = list(times)
        wires = dict(zip(ids, self.client.hmget(self.entries, ids), strict=True))
        # settled between the two reads, or a half-written entry: nothing to publish
        self.settle(message_id for message_id, wire in wires.items() if not wire)
        return {message_id: (times[message_id], str(wire))
                for message_id, wire in wires.items() if wire}

    def size(self) -> int:
        return int(self.client.zcard(self.recorded_at))

    def oldest(self) -> float | None:
        """When the oldest entry was recorded (or last republished), as a Unix time."""
        first = self.client.zrange(self.recorded_at, 0, 0, withscores=True)
        return float(first[0][1]) if first else None
