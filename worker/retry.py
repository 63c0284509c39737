"""The one retry policy: which failures are transient, and how long to wait before the next
attempt (exponential backoff with jitter, capped below the visibility timeout)."""

from __future__ import annotations

import random

import psycopg.errors
import redis.exceptions
import sqlalchemy.exc
from celery.exceptions import SoftTimeLimitExceeded

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # unreachable database, deadlock, lock or statement timeout
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
    SoftTimeLimitExceeded,  # a slow database, most likely; the next attempt may be quick
)


# Waits on one refund's row lock, not an outage: in a batch, only that refund's delivery
# should wait for a retry.
CONTENTION_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.LockNotAvailable,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.QueryCanceled,  # statement timeout
    psycopg.errors.SerializationFailure,
)

_jitter = random.Random()  # noqa: S311 - spreads retries, guards nothing


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


def lost_the_database(error: BaseException) -> bool:
    """A transient failure of the database or its connection pool that is not a wait on a
    lock (not Redis, nor a time limit): what an outage of the database looks like."""
    return (isinstance(error, sqlalchemy.exc.SQLAlchemyError) and is_transient(error)
            and not is_contention(error))


def is_contention(error: BaseException) -> bool:
    return isinstance(error, sqlalchemy.exc.DBAPIError) and isinstance(error.orig,
                                                                      CONTENTION_ERRORS)


def backoff_seconds(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Equal jitter: half the exponential delay is fixed, half random, so delays still grow
    while retries of many messages spread out."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + (rng or _jitter).uniform(0, delay / 2)
