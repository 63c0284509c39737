"""Reading what the ingest put on the Redis queue, through kombu's own message format, and in
the ledger beside it."""

from __future__ import annotations

import json
from typing import Any

import redis

from broker.ledger import Ledger
from broker.wire import delivery_of
from refunds.delivery import RawDelivery
from refunds.settings import Settings


def _messages(settings: Settings) -> list[bytes]:
    """The kombu messages on the queue as Redis holds them, oldest first."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        raw_messages = client.lrange(settings.redis_key_prefix + settings.queue, 0, -1)
    finally:
        client.close()
    return list(reversed(raw_messages))


def envelopes(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(message) for message in _messages(settings)]


def queued(settings: Settings) -> list[RawDelivery]:
    return [delivery_of(message) for message in _messages(settings)]


def take_queued(settings: Settings) -> list[RawDelivery]:
    """The queued deliveries, removed from the queue (tests that apply them by hand)."""
    found = queued(settings)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.delete(settings.redis_key_prefix + settings.queue)
    finally:
        client.close()
    return found


def ledger_entries(settings: Settings) -> dict[str, RawDelivery]:
    """The ledger's deliveries by task message id."""
    ledger = Ledger(settings)
    try:
        messages = ledger.client.hgetall(ledger.entries)
    finally:
        ledger.client.close()
    return {key: delivery_of(message) for key, message in messages.items()}
