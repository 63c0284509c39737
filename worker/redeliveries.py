"""Counting how often a task message starts, to stop a poison message that kills its worker
process every time: such a message never ends normally, so it is requeued again and again.

Each start increments a counter in Redis keyed by the task message's id (a redelivered
message and a retry keep the id; a dead-letter requeue is a new message); every normal end,
a retry's included, deletes it.
A count above the limit means the previous starts all died mid-message."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import redis

from broker import keys
from broker.redis_client import redis_client
from refunds.settings import Settings

log = logging.getLogger("refund_sink.worker")
COUNTER_TTL_SECONDS = 7 * 24 * 3600


class StartCounter:
    def __init__(self, settings: Settings):
        self.client = redis_client(settings, timeout=5)
        self.prefix = keys.scoped(settings, keys.STARTS)

    def start(self, message_id: str) -> int:
        """How many times this message has started, this time included (1 if unknown)."""
        return self.start_all([message_id])[message_id]

    def start_all(self, message_ids: Sequence[str]) -> dict[str, int]:
        """`start` for many messages in one round trip."""
        try:
            pipe = self.client.pipeline()
            for message_id in message_ids:
                pipe.incr(self.prefix + message_id)
                pipe.expire(self.prefix + message_id, COUNTER_TTL_SECONDS)
            counts = pipe.execute()[::2]
            return {message_id: int(count) for message_id, count in zip(message_ids, counts,
                                                                        strict=True)}
        except redis.RedisError as error:
            log.warning("cannot count starts of %d messages (%s)", len(message_ids),
                        type(error).__name__)
            return dict.fromkeys(message_ids, 1)

    def finish(self, *message_ids: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else the keys expire on their own
            self.client.delete(*(self.prefix + message_id for message_id in message_ids))
