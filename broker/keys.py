"""The names of the Redis keys the sink owns, each scoped by queue as well as by
REFUND_SINK_REDIS_KEY_PREFIX: two sinks sharing one Redis and one prefix, told apart by
REFUND_SINK_QUEUE, never read or sweep each other's ledger, lock or counters.

kombu's own keys (the queue, `unacked`, `unacked_index`) stay as kombu names them."""

from __future__ import annotations

from refunds.settings import Settings

LEDGER = "ledger"  # hash: task message id -> the message as queued
RECORDED_AT = "ledger:recorded-at"  # sorted set: task message id -> when published
SWEEP_LOCK = "ledger:sweeping"  # one sweeper at a time
STARTS = "starts:"  # followed by a task message id: how often it started


def owned(queue: str, name: str) -> str:
    """A key of the sink's before the prefix, as the transport writes it (kombu's client adds
    the prefix)."""
    return f"refund-sink:{queue}:{name}"


def scoped(settings: Settings, name: str) -> str:
    """The same key as a plain Redis client must name it: prefix included."""
    return settings.redis_key_prefix + owned(settings.queue, name)
