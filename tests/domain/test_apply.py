"""Applying messages to a refund: order independence, dedupe, the SPEC's rules. Runs on both
SQLite and PostgreSQL (the db_url fixture)."""

from __future__ import annotations

import itertools
from decimal import Decimal

from deliveries import apply, clear, delivery, view
from payloads import camel_event, doc_example_event, spec_sequence
from sqlalchemy import func, select

from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import MessageRecord, RawDeliveryRecord, Refund
from refunds.settings import Settings

SPEC_FINAL = {
    "status": "refunded",
    "refund_price": "20.00",
    "events_applied": 3,
    "fund_changes": [
        {"amount": "20.00", "previous_amount": "25.00", "at": "2025-03-01T10:05:00+00:00"}
    ],
}


def test_spec_sequence_in_every_order_ends_in_the_spec_state(settings: Settings) -> None:
    for order in itertools.permutations(spec_sequence()):
        # given a fresh database; when the three messages arrive in this order
        clear(settings)
        outcomes = [apply(settings, delivery(payload)) for payload in order]
        # then each applies once and the refund is the SPEC's final state
        assert outcomes == [Outcome.APPLIED] * 3
        state = view(settings, "7001")
        assert {key: state[key] for key in SPEC_FINAL} == SPEC_FINAL, order
        assert state["order_id"] == "9001"


def test_duplicates_have_no_effect_in_every_order(settings: Settings) -> None:
    for order in itertools.permutations(spec_sequence()):
        clear(settings)
        first = [delivery(payload) for payload in order]
        outcomes = [apply(settings, raw) for raw in first]
        # the same deliveries again (Genstore retried) and the same content under new ids
        outcomes += [apply(settings, raw) for raw in reversed(first)]
        outcomes += [apply(settings, delivery(payload)) for payload in order]
        assert outcomes.count(Outcome.APPLIED) == 3
        assert outcomes.count(Outcome.DUPLICATE_DELIVERY) == 3
        assert outcomes.count(Outcome.DUPLICATE_MESSAGE) == 3
        state = view(settings, "7001")
        assert {key: state[key] for key in SPEC_FINAL} == SPEC_FINAL, order


def test_doc_example_is_stored_exactly(settings: Settings) -> None:
    apply(settings, delivery(doc_example_event()))
    state = view(settings, "10220473645")
    assert state["status"] == "in_progress"
    assert state["refund_price"] == "10.00"
    assert state["order_id"] == "300141548096383"
    assert state["customer_id"] == "1"
    assert state["currency"] == "USD"
    assert state["created_at"] == "2024-12-31T00:00:00+00:00"
    assert state["line_items"][0]["sku"] == "128G;白色;"  # type: ignore[index]
    assert state["line_items"][0]["price"] == "10.00"  # type: ignore[index]
    assert state["fund_changes"] == []
    assert state["events_applied"] == 1


def test_money_is_decimal_in_the_database(settings: Settings) -> None:
    apply(settings, delivery(camel_event(refund_id="1", price="1234567890123.10")))
    with session_factory(settings)() as session:
        price = session.scalars(select(Refund.refund_price)).one()
    assert isinstance(price, Decimal)
    assert str(price) == "1234567890123.10"


def test_late_in_progress_never_reopens_a_refunded_refund(settings: Settings) -> None:
    apply(settings, delivery(camel_event(status="refunded", update_time="2025-03-01T11:00:00Z")))
    apply(settings, delivery(camel_event(status="in_progress", price="30.00",
                                         update_time="2025-03-01T12:00:00Z")))
    state = view(settings, "7001")
    assert state["status"] == "refunded"
    assert state["refund_price"] == "30.00"  # the latest message still sets the fields
    assert state["events_applied"] == 2


def test_fund_change_for_an_unseen_refund_creates_it_in_progress(settings: Settings) -> None:
    apply(settings, delivery(camel_event(status="fund_change", price="5.00")))
    state = view(settings, "7001")
    assert state["status"] == "in_progress"
    assert state["fund_changes"] == [
        {"amount": "5.00", "previous_amount": None, "at": "2025-03-01T10:00:00+00:00"}
    ]


def test_stale_message_counts_but_does_not_overwrite_fields(settings: Settings) -> None:
    apply(settings, delivery(camel_event(note="new", update_time="2025-03-02T00:00:00Z")))
    apply(settings, delivery(camel_event(note="old", update_time="2025-03-01T00:00:00Z")))
    state = view(settings, "7001")
    assert state["note"] == "new"
    assert state["events_applied"] == 2
    assert state["updated_at"] == "2025-03-02T00:00:00+00:00"


def test_non_ascii_text_round_trips(settings: Settings) -> None:
    note = "退款 — 𝄞 naïve ☃"
    apply(settings, delivery(camel_event(note=note, sku="128G;白色;")))
    state = view(settings, "7001")
    assert state["note"] == note
    assert state["line_items"][0]["sku"] == "128G;白色;"  # type: ignore[index]


def test_every_delivery_is_archived_once_with_its_raw_body(settings: Settings) -> None:
    raw = delivery(doc_example_event())
    apply(settings, raw)
    apply(settings, raw)
    with session_factory(settings)() as session:
        rows = session.scalars(select(RawDeliveryRecord)).all()
        messages = session.scalar(select(func.count()).select_from(MessageRecord))
    assert [row.body for row in rows] == [raw.body]
    assert messages == 1


def test_refunds_are_keyed_by_shop_and_id(settings: Settings) -> None:
    apply(settings, delivery(camel_event(price="1.00"), shop="a.example"))
    apply(settings, delivery(camel_event(price="2.00"), shop="b.example"))
    assert view(settings, "7001", shop="a.example")["refund_price"] == "1.00"
    assert view(settings, "7001", shop="b.example")["refund_price"] == "2.00"
