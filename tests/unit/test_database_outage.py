"""A database outage must not spend retries: workers stop fetching while the database is away
(the breaker), an attempt that fails while it is away is held, not counted, and a last attempt
that lost the database is tried once more before it is dead-lettered."""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.errors
import pytest
import sqlalchemy.exc
from celery.exceptions import Ignore
from conftest import make_settings
from deliveries import batch_request, delivery
from payloads import camel_event
from sqlalchemy import select

from broker.app import make_celery
from broker.wire import to_wire
from refunds.db import session_factory
from refunds.models import DeadLetter
from worker.breaker import OPEN_AFTER, DatabaseBreaker
from worker.handling import DeliveryHandler
from worker.task_events import task_event
from worker.tasks import register_tasks

pytestmark = pytest.mark.unit

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
REFUSED = sqlalchemy.exc.OperationalError("connect", {}, psycopg.OperationalError("refused"))
LOCK_WAIT = sqlalchemy.exc.OperationalError("SELECT", {},
                                            psycopg.errors.LockNotAvailable("lock"))


class Consumer:
    """The calls a breaker makes on Celery's consumer, run at once."""

    def __init__(self) -> None:
        self.changes: list[str] = []

    def call_soon(self, change: Any, queue: str) -> None:
        change(queue)

    def cancel_task_queue(self, queue: str) -> None:
        self.changes.append(f"cancel {queue}")

    def add_task_queue(self, queue: str) -> None:
        self.changes.append(f"add {queue}")


def test_breaker_pauses_fetching_while_the_database_is_away_and_resumes() -> None:
    answers = iter([True, False, *[False] * OPEN_AFTER, False, True, True])
    breaker = DatabaseBreaker(make_settings("sqlite://", queue="refunds-q"),
                              probe=lambda: next(answers))
    consumer = Consumer()
    for _ in range(7):
        breaker.check(consumer)
    # one failed probe is a blip; OPEN_AFTER in a row pause once; the first answer resumes
    assert consumer.changes == ["cancel refunds-q", "add refunds-q"]
    assert not breaker.open


def test_a_last_attempt_that_lost_the_database_is_tried_once_more(sqlite_url: str) -> None:
    # given a database that answers again (it came back just after the attempt failed)
    settings = make_settings(sqlite_url, max_retries=3)
    handler = DeliveryHandler(settings)
    raw = delivery(camel_event())
    # when the last counted attempt failed because the connection was refused
    again = handler.on_failure(raw, REFUSED, attempt=3)
    # then it is tried once more, and only a failure after that is a dead letter
    assert again is not None
    assert handler.on_failure(raw, REFUSED, attempt=4) is None
    waited = delivery(camel_event(refund_id="2"))
    assert handler.on_failure(waited, LOCK_WAIT, attempt=3) is None  # a lock wait: no extra
    with session_factory(settings)() as session:
        letters = {(letter.delivery_id, letter.reason, letter.attempts)
                   for letter in session.scalars(select(DeadLetter))}
    assert letters == {(raw.delivery_id, "retries_exhausted", 4),
                       (waited.delivery_id, "retries_exhausted", 3)}


def test_held_only_while_the_database_does_not_answer(sqlite_url: str) -> None:
    raw = delivery(camel_event())
    assert DeliveryHandler(make_settings(UNREACHABLE_DB)).held_for_database(raw, REFUSED)
    assert not DeliveryHandler(make_settings(UNREACHABLE_DB)).held_for_database(raw, LOCK_WAIT)
    assert not DeliveryHandler(make_settings(sqlite_url)).held_for_database(raw, REFUSED)


@pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])
def test_attempts_failing_while_the_database_is_away_are_not_counted(
    monkeypatch: pytest.MonkeyPatch, batch_size: int
) -> None:
    settings = make_settings(UNREACHABLE_DB, batch_size=batch_size, max_retries=8)
    task = register_tasks(make_celery(settings), settings)
    published: list[dict[str, Any]] = []
    monkeypatch.setattr(task, "apply_async", lambda *a, **options: published.append(options))
    events: list[str] = []
    monkeypatch.setattr(task, "send_event", lambda kind, **_fields: events.append(kind))
    raw = delivery(camel_event())
    # when the last counted attempt of a delivery fails with the database down
    if batch_size == 1:
        task.push_request(retries=7, id="t-1", called_directly=False, is_eager=False)
        try:
            with pytest.raises(Ignore):  # acknowledged; its event says what became of it
                task.run(to_wire(raw))
        finally:
            task.pop_request()
        [shown] = events
    else:
        shown, _ = task_event(task.run([batch_request(raw, "t-1", retries=7)])["t-1"])
    # then it is held: tried again at the longest delay with its count unchanged, never
    # dead-lettered while the database is away
    assert shown == "task-retried"
    [retry] = published
    assert (retry["task_id"], retry["retries"]) == ("t-1", 7)
    assert retry["countdown"] == settings.retry_max_seconds
