"""The retry policy's delays and its transient/permanent split."""

from __future__ import annotations

import random

import psycopg
import psycopg.errors
import pytest
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded

from worker.retry import backoff_seconds, is_contention, is_transient

pytestmark = pytest.mark.unit


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_seconds(n, base=1.0, cap=60.0, rng=rng) for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 60.0
    again = [backoff_seconds(3, base=1.0, cap=60.0, rng=rng) for _ in range(20)]
    assert len(set(again)) > 1  # jittered


def test_database_and_connection_errors_are_transient_others_are_not() -> None:
    assert is_transient(sqlalchemy.exc.OperationalError("SELECT", {}, Exception("down")))
    assert is_transient(ConnectionResetError())
    assert is_transient(SoftTimeLimitExceeded())
    assert not is_transient(KeyError("bug"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("dup")))


def test_lock_waits_are_contention_outages_are_not() -> None:
    """In a batch, contention isolates the waiting delivery; an outage retries them all."""
    lock = sqlalchemy.exc.OperationalError("SELECT", {}, psycopg.errors.LockNotAvailable("x"))
    deadlock = sqlalchemy.exc.OperationalError("SELECT", {}, psycopg.errors.DeadlockDetected())
    refused = sqlalchemy.exc.OperationalError("connect", {}, psycopg.OperationalError("refused"))
    assert is_contention(lock) and is_contention(deadlock)
    assert is_transient(lock) and is_transient(refused)
    assert not is_contention(refused)
    assert not is_contention(ConnectionResetError())
