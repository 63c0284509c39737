"""kombu's Redis transports (a server, or a master found through Sentinel), with the ledger
entry written in the publish's own round trip.

Every message of the sink's task (from the ingest, the spool, a dead-letter requeue or a
worker's retry) goes into the ledger (`broker.ledger`) in the same script as its `LPUSH`:
one round trip for the ingest's acknowledgement, and never a queued message without its
entry. A retry replaces its entry with the new message (same id, next attempt).
Everything else kombu sends (control replies, events) passes through untouched.

With Sentinel, Redis replicates asynchronously: a message the master took but no replica
holds is gone after a failover, though the ingest answered 202 for it. So the same round trip
ends with `WAIT confirm_replicas`, and a publish that fewer replicas confirmed raises
`NotReplicated`: the ingest spools the delivery, a worker sends its message back to the queue.
The message may still be on the master; if it survives, the copy sent again is a duplicate
the dedupe absorbs.

kombu's internals used here, the reason kombu is pinned below 6 and tested with a prefix
(`tests/integration/test_ledger.py`, `test_two_sinks.py`, `test_sentinel.py`): `_put`,
`_q_for_pri`, `_get_message_priority`, `conn_or_acquire`, `_expires`, `global_keyprefix`,
the transport options on `connection.client`, and that kombu's key-prefixing client leaves
`EVAL` alone."""

from __future__ import annotations

import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

from broker import keys
from broker.app import TASK_NAME

# How long a publish waits for its replicas: they answer within milliseconds when up.
CONFIRM_TIMEOUT_MS = 500
# KEYS: the ledger hash, its recorded-at sorted set, the queue; ARGV: message id, message, now
PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return redis.call('LPUSH', KEYS[3], ARGV[2])
"""


class NotReplicated(redis.exceptions.ConnectionError):
    """Fewer replicas than REDIS_URL's `replicas` confirmed the message in time. A connection
    error, so it is transient everywhere (`worker.retry`)."""


class Channel(kombu_redis.Channel):
    """kombu's Redis channel with the ledger's `_put`; the Sentinel channel below shares it."""

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        message_id = _ledger_id(message)
        batched = kwargs.get("_publish_batch") is not None
        if message_id is None or batched or (self._expires and queue in self._expires):
            super()._put(queue, message, **kwargs)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        # kombu's client prefixes the keys of the commands it knows (REFUND_SINK_REDIS_KEY_PREFIX),
        # not EVAL's: the script gets them prefixed here
        prefix = self.global_keyprefix
        names = [prefix + keys.owned(queue, keys.LEDGER),
                 prefix + keys.owned(queue, keys.RECORDED_AT), prefix + key]
        payload = dumps(message)
        # from REDIS_URL (`broker.redis_client.sentinel_options`)
        replicas = int(self.connection.client.transport_options.get("confirm_replicas", 0))
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            pipe.eval(PUT, len(names), *names, message_id, payload, time.time())
            if replicas:
                pipe.wait(replicas, CONFIRM_TIMEOUT_MS)
            confirmed = pipe.execute()[1:]
        if confirmed and confirmed[0] < replicas:
            raise NotReplicated(f"{confirmed[0]} of {replicas} replicas confirmed message "
                                f"{message_id} within {CONFIRM_TIMEOUT_MS} ms")


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (a subclass of its Redis channel) with the ledger's `_put`:
    the method order is this class, ours, kombu's Sentinel channel, kombu's Redis self."""


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


def _ledger_id(message: dict[str, Any]) -> str | None:
    headers = message.get("headers") or {}
    if headers.get("task") != TASK_NAME or not headers.get("id"):
        return None
    return str(headers["id"])
