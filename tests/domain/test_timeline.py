"""A refund's timeline: each delivery that reached the refund leaves one event, with the effect
the apply path decided for it and the way it came, written in the same transaction."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from deliveries import apply, delivery
from payloads import camel_event, to_body
from sqlalchemy import func, select

from refunds.apply import Outcome, apply_deliveries
from refunds.db import session_factory
from refunds.delivery import Origin
from refunds.models import DeadLetter, DeliveryClaim, RefundEvent
from refunds.settings import Settings
from refunds.timeline import timeline


def _timeline(settings: Settings, refund_id: str = "7001") -> list[tuple[object, ...]]:
    with session_factory(settings)() as session:
        return [(event.delivery_id, event.effect, event.origin, event.kind,
                 None if event.price is None else str(event.price))
                for event in timeline("default", refund_id, session=session)]


def test_every_effect_is_an_event_in_the_order_the_messages_happened(settings: Settings) -> None:
    # given the SPEC's three messages, the refunded one arriving first
    refunded = camel_event(status="refunded", price="20.00", update_time="2025-03-01T10:09:00Z")
    started = camel_event(status="in_progress", price="25.00",
                          update_time="2025-03-01T10:00:00Z")
    assert apply(settings, delivery(refunded, delivery_id="d-refunded")) is Outcome.APPLIED
    # when an older message arrives late, then a resend, the same message under a new id,
    # and another body under a claimed id
    assert apply(settings, delivery(started, delivery_id="d-started")) is Outcome.APPLIED
    assert apply(settings, delivery(started, delivery_id="d-started")) is (
        Outcome.DUPLICATE_DELIVERY)
    assert apply(settings, delivery(started, delivery_id="d-copy")) is Outcome.DUPLICATE_MESSAGE
    changed = camel_event(status="fund_change", price="20.00", update_time="2025-03-01T10:05:00Z")
    assert apply(settings, delivery(changed, delivery_id="d-refunded")) is Outcome.DEAD_LETTERED
    # then the timeline holds each of them once, by the time each message says it happened
    assert _timeline(settings) == [
        ("d-started", "stale", "webhook", "in_progress", "25.00"),
        ("d-started", "duplicate_delivery", "webhook", "in_progress", "25.00"),
        ("d-copy", "duplicate_message", "webhook", "in_progress", "25.00"),
        ("d-refunded", "conflict", "webhook", "fund_change", "20.00"),
        ("d-refunded", "applied", "webhook", "refunded", "20.00"),
    ]
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(DeliveryClaim)) == 3
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 1


def test_an_unreadable_conflicting_body_is_shown_on_the_claimed_refund(settings: Settings) -> None:
    # given a claimed delivery
    apply(settings, delivery(camel_event(), delivery_id="d-1"))
    # when another body that is not even JSON comes under its id
    assert apply(settings, delivery(b"{not json", delivery_id="d-1")) is Outcome.DEAD_LETTERED
    # then the refund's timeline shows the conflict, with nothing it could say, last
    assert _timeline(settings) == [("d-1", "applied", "webhook", "in_progress", "25.00"),
                                   ("d-1", "conflict", "webhook", None, None)]


def test_origins_are_kept(settings: Settings) -> None:
    # given deliveries that came as webhooks, from a requeue and from reconciliation
    first = delivery(camel_event(update_time="2025-03-01T10:00:00Z"), delivery_id="d-w")
    requeued = dataclasses.replace(
        delivery(camel_event(price="24.00", update_time="2025-03-01T10:01:00Z"),
                 delivery_id="d-r"), origin=Origin.REQUEUED)
    pulled = dataclasses.replace(
        delivery(camel_event(status="refunded", update_time="2025-03-01T10:02:00Z"),
                 delivery_id="d-p"), origin=Origin.PULLED)
    for each in (first, requeued, pulled):
        apply(settings, each)
    # then each event says how its delivery came
    assert [(row[0], row[2]) for row in _timeline(settings)] == [
        ("d-w", "webhook"), ("d-r", "requeued"), ("d-p", "pulled")]


def test_a_delivery_that_reaches_no_refund_leaves_no_event(settings: Settings) -> None:
    assert apply(settings, delivery(to_body({"refund": {"price": "1"}}))) is (
        Outcome.DEAD_LETTERED)
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(RefundEvent)) == 0


def test_events_of_one_list_are_written_together_with_their_arrival_times(
    settings: Settings
) -> None:
    # given two deliveries of one refund applied in one transaction
    received = datetime(2025, 3, 1, 11, 0, tzinfo=UTC)
    both = [delivery(camel_event(update_time="2025-03-01T10:00:00Z"), received_at=received),
            delivery(camel_event(status="refunded", update_time="2025-03-01T10:09:00Z"),
                     received_at=received)]
    with session_factory(settings).begin() as session:
        apply_deliveries(both, session=session, naive_tz="UTC")
    # then both are on the timeline, each with the time the ingest received it
    with session_factory(settings)() as session:
        events = timeline("default", "7001", session=session)
        assert [(e.effect, e.received_at) for e in events] == [("applied", received)] * 2
