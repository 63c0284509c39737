"""kombu's Redis transport, with the ledger entry written in the publish's own round trip.

Every message of the sink's task (from the ingest, the spool, a dead-letter requeue or a
worker's retry) goes into the ledger (`broker.ledger`) in the same `MULTI` as its `LPUSH`:
one round trip for the ingest's acknowledgement instead of two, and never a queued message
without its entry. A retry replaces its entry with the new message (same id, next attempt).
Everything else kombu sends (control replies, events) passes through untouched."""

from __future__ import annotations

import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

from broker import keys
from broker.app import TASK_NAME


class Channel(kombu_redis.Channel):
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        message_id = _ledger_id(message)
        batched = kwargs.get("_publish_batch") is not None
        if message_id is None or batched or (self._expires and queue in self._expires):
            super()._put(queue, message, **kwargs)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        payload = dumps(message)
        # the ledger of the queue the message goes to; kombu's client adds
        # REFUND_SINK_REDIS_KEY_PREFIX to these keys, as to the queue's
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=True)
            pipe.hset(keys.owned(queue, keys.LEDGER), message_id, payload)
            pipe.zadd(keys.owned(queue, keys.RECORDED_AT), {message_id: time.time()})
            pipe.lpush(key, payload)
            pipe.execute()


class Transport(kombu_redis.Transport):
    Channel = Channel


def _ledger_id(message: dict[str, Any]) -> str | None:
    headers = message.get("headers") or {}
    if headers.get("task") != TASK_NAME or not headers.get("id"):
        return None
    return str(headers["id"])
