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
# KEYS: the messages' counters; ARGV[1]: their time to live. Returns each count, in order.
START = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
return counts
"""


class StartCounter:
    def __init__(self, settings: Settings):
        self.client = redis_client(settings, timeout=5)
        self.prefix = keys.scoped(settings, keys.STARTS)
        self._start = self.client.register_script(START)

    def start(self, message_id: str) -> int:
        """How many times this message has started, this time included (1 if unknown)."""
        return self.start_all([message_id])[message_id]

    def start_all(self, message_ids: Sequence[str]) -> dict[str, int]:
        """`start` for many messages in one round trip: one script call, not two commands a
        message for redis-py to pack (a batch's 200 were some 2% of a worker's time)."""
        if not message_ids:
            return {}
        try:
            counts = self._start(keys=[self.prefix + message_id for message_id in message_ids],
                                 args=[COUNTER_TTL_SECONDS])
            return {message_id: int(count) for message_id, count in zip(message_ids, counts,
                                                                        strict=True)}
        except redis.RedisError as error:
            log.warning("cannot count starts of %d messages (%s)", len(message_ids),
                        type(error).__name__)
            return dict.fromkeys(message_ids, 1)

    def finish(self, *message_ids: str) -> None:
        with contextlib.suppress(redis.RedisError):  # else the keys expire on their own
            self.client.delete(*(self.prefix + message_id for message_id in message_ids))
