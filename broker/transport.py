"""kombu's Redis transports (a server, or a master found through Sentinel), with the ledger
entry written in the publish's own round trip.

Every message of the sink's task (from the ingest, the spool, a dead-letter requeue or a
worker's retry) goes into the ledger (`broker.ledger`) in the same script as its `LPUSH`:
one round trip for the ingest's acknowledgement, and never a queued message without its
entry. A retry replaces its entry with the new message (same id, next attempt).
Everything else kombu sends (control replies, events) passes through untouched. The sink's
own publishes (`broker.publish`) skip Celery's and kombu's message building and write their
prepared message (`broker.envelope`) through a `Recorder`: a client of one of the app's
channels, kept, and the same script (`put_recorded`, the one writer both use).

With Sentinel, Redis replicates asynchronously: a message the master took but no replica
holds is gone after a failover, though the ingest answered 202 for it. So the same round trip
ends with `WAIT confirm_replicas`, and a publish that fewer replicas confirmed raises
`NotReplicated`: the ingest spools the delivery, a worker sends its message back to the queue.
The message may still be on the master; if it survives, the copy sent again is a duplicate
the dedupe absorbs.

kombu's internals used here, the reason kombu is pinned below 6 and tested with a prefix
(`tests/integration/test_ledger.py`, `test_two_sinks.py`, `test_sentinel.py`): `_put`,
`_q_for_pri`, `_get_message_priority`, `conn_or_acquire` (the `Recorder` keeps the client it
yields), `_expires`, `global_keyprefix`,
the transport options on `connection.client`, and that kombu's key-prefixing client leaves
`EVAL` alone."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
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
        with self.conn_or_acquire() as client:
            put_recorded(client, ledger_names(self.global_keyprefix, queue, key),
                         [(message_id, dumps(message))], self.confirm_replicas())

    def confirm_replicas(self) -> int:
        """How many replicas must confirm a published message: from REDIS_URL
        (`broker.redis_client.sentinel_options`), 0 for a lone server."""
        return int(self.connection.client.transport_options.get("confirm_replicas", 0))


@dataclass(frozen=True)
class Recorder:
    """A kept Redis client of one of an app's channels, for the prepared publish
    (`broker.publish`): the same pool, prefix, Sentinel master and replicas as `_put`, without
    kombu making a client per message. Thread-safe (a pool connection per round trip)."""

    connection: Any  # kombu's connection, held open: the pool belongs to its channel
    client: redis.Redis
    names: list[str]
    replicas: int

    def put(self, messages: list[tuple[str, str]]) -> None:
        put_recorded(self.client, self.names, messages, self.replicas)

    def close(self) -> None:
        self.connection.release()


def recorder(app: Celery, queue: str) -> Recorder:
    """Open a channel of the app's transport and keep a client of it for `queue` (priority
    0). Raises kombu's or redis-py's errors within the app's broker connection timeout."""
    connection = app.connection_for_write()
    try:
        channel = connection.default_channel
        if not isinstance(channel, Channel):
            raise TypeError(f"the app's transport is not the sink's: {type(channel)!r}")
        # a client of the channel's pool, as `_put` gets one, but kept
        with channel.conn_or_acquire() as client:
            pass
        names = ledger_names(channel.global_keyprefix, queue, channel._q_for_pri(queue, 0))
        return Recorder(connection, client, names, channel.confirm_replicas())
    except BaseException:
        connection.release()
        raise


def ledger_names(prefix: str, queue: str, queue_key: str) -> list[str]:
    """The script's keys: the queue's ledger, its recorded-at set, and the queue's list
    (`queue_key`, as kombu names it for the message's priority). kombu's client prefixes the
    keys of the commands it knows (REFUND_SINK_REDIS_KEY_PREFIX), not EVAL's: `prefix` is
    added here."""
    return [prefix + keys.owned(queue, keys.LEDGER), prefix + keys.owned(queue, keys.RECORDED_AT),
            prefix + queue_key]


def put_recorded(client: redis.Redis, names: list[str], messages: list[tuple[str, str]],
                 replicas: int) -> None:
    """Queue each (message id, message as JSON text) with its ledger entry, all in one round
    trip, then wait for `replicas` replicas to confirm them (none: no wait). The one writer
    of the sink's task messages: `Channel._put` above and the prepared publish
    (`broker.publish`). Raises redis-py's errors, or NotReplicated: then every message may or
    may not be on the master, and the caller treats all of them as not taken."""
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for message_id, payload in messages:
        pipe.eval(PUT, len(names), *names, message_id, payload, now)
    if replicas:
        pipe.wait(replicas, CONFIRM_TIMEOUT_MS)
    confirmed = pipe.execute()[len(messages):]
    if confirmed and confirmed[0] < replicas:
        ids = ", ".join(message_id for message_id, _ in messages)
        raise NotReplicated(f"{confirmed[0]} of {replicas} replicas confirmed message(s) "
                            f"{ids} within {CONFIRM_TIMEOUT_MS} ms")


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
