"""Permanent failures become dead letters with their reason; requeues resolve them once."""

from __future__ import annotations

import json

import psycopg.errors
import pytest
import sqlalchemy.exc
from deliveries import apply, delivery, view
from payloads import camel_event, to_body
from sqlalchemy import func, select

from broker.wire import from_wire, to_wire
from refunds import dead_letters
from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, Refund
from refunds.settings import Settings
from refunds.timeline import timeline
from worker.handling import DeliveryHandler

BAD_DELIVERIES = {
    "invalid_json": lambda: delivery(b'{"refund": {"id": "1",'),
    "invalid_payload": lambda: delivery(to_body({"refund": {"refundPrice": "1.00"}})),
    "unsupported_topic": lambda: delivery(camel_event(), topic="orders/create"),
    "unknown_status": lambda: delivery(camel_event(status="exploded")),
}


def letters(settings: Settings) -> list[DeadLetter]:
    with session_factory(settings)() as session:
        return list(dead_letters.find(session=session))


@pytest.mark.parametrize("reason", sorted(BAD_DELIVERIES))
def test_each_permanent_failure_is_dead_lettered_with_its_reason(
    settings: Settings, reason: str
) -> None:
    raw = BAD_DELIVERIES[reason]()
    assert apply(settings, raw) is Outcome.DEAD_LETTERED
    [letter] = letters(settings)
    assert (letter.reason, letter.state, letter.attempts) == (reason, "dead", 1)
    assert letter.body == raw.body and letter.delivery_id == raw.delivery_id
    assert letter.error
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0
        assert session.scalar(select(func.count()).select_from(DeliveryClaim)) == 0


def test_invalid_payload_keeps_the_validation_errors(settings: Settings) -> None:
    apply(settings, delivery(to_body({"refund": {"id": "1", "refundPrice": 10.5}})))
    [letter] = letters(settings)
    assert letter.reason == "invalid_payload"
    assert letter.errors and all("loc" in error for error in letter.errors)


def test_a_repeated_failing_delivery_updates_its_one_dead_letter(settings: Settings) -> None:
    raw = BAD_DELIVERIES["unknown_status"]()
    apply(settings, raw)
    apply(settings, raw)
    [letter] = letters(settings)
    assert letter.attempts == 2
    assert letter.last_failed_at >= letter.first_failed_at


def _exhaust(settings: Settings, raw: RawDelivery) -> DeadLetter:
    handler = DeliveryHandler(settings)
    # a lock wait: transient, and not a lost database (which gets one more try)
    failure = sqlalchemy.exc.OperationalError("UPDATE", {},
                                              psycopg.errors.LockNotAvailable("lock timeout"))
    delays = [handler.on_failure(raw, failure, attempt) for attempt in range(1, 9)]
    assert all(delay is not None and delay > 0 for delay in delays[:-1])
    assert delays[-1] is None  # the 8th failed attempt is the last
    [letter] = letters(settings)
    return letter


def test_transient_failures_end_as_retries_exhausted(settings: Settings) -> None:
    letter = _exhaust(settings, delivery(camel_event()))
    assert (letter.reason, letter.attempts) == ("retries_exhausted", 8)
    assert "lock timeout" in letter.error


def test_requeue_applies_once_and_resolves(settings: Settings) -> None:
    raw = delivery(camel_event())
    letter = _exhaust(settings, raw)
    sessions = session_factory(settings)

    def deliver(requeued: RawDelivery) -> None:
        assert requeued.body == raw.body and requeued.delivery_id == raw.delivery_id
        # it travels as the queue carries it, and says it was requeued
        apply(settings, from_wire(json.loads(json.dumps(to_wire(requeued)))))

    first = dead_letters.requeue(sessions, deliver, ids=[letter.id])
    second = dead_letters.requeue(sessions, deliver, ids=[letter.id, 999])
    assert first.requeued == [letter.id]
    assert second.already_resolved == [letter.id] and second.not_found == [999]
    [resolved] = letters(settings)
    assert resolved.state == "resolved" and resolved.resolved_at is not None
    assert view(settings, "7001")["events_applied"] == 1
    with sessions() as session:
        [event] = timeline("default", "7001", session=session)
        assert (event.effect, event.origin) == ("applied", "requeued")


def test_requeue_that_cannot_publish_leaves_the_letter_dead(settings: Settings) -> None:
    letter = _exhaust(settings, delivery(camel_event()))

    def broken(_raw: RawDelivery) -> None:
        raise ConnectionError("broker down")

    result = dead_letters.requeue(session_factory(settings), broken, ids=[letter.id])
    assert result.failed == [letter.id]
    assert letters(settings)[0].state == "dead"


def test_a_bug_is_dead_lettered_as_internal_error_at_once(settings: Settings) -> None:
    handler = DeliveryHandler(settings)
    assert handler.on_failure(delivery(camel_event()), KeyError("oops"), attempt=1) is None
    [letter] = letters(settings)
    assert letter.reason == "internal_error" and "KeyError" in letter.error


def test_a_dead_letter_whose_delivery_applies_elsewhere_is_resolved(settings: Settings) -> None:
    # given a delivery dead-lettered after transient failures
    raw = delivery(camel_event())
    _exhaust(settings, raw)
    # when Genstore redelivers the same delivery id and it applies
    assert apply(settings, raw) is Outcome.APPLIED
    # then the letter is resolved, and resending again keeps it so
    assert apply(settings, raw) is Outcome.DUPLICATE_DELIVERY
    [letter] = letters(settings)
    assert letter.state == "resolved"


def test_a_failure_recorded_after_another_copy_applied_is_resolved(settings: Settings) -> None:
    raw = delivery(camel_event())
    apply(settings, raw)
    _exhaust(settings, raw)
    assert letters(settings)[0].state == "resolved"
