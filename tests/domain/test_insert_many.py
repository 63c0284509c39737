"""`refunds.db.insert_ignore_many` on both databases (on PostgreSQL through one JSON parameter,
`refunds.json_insert`): values come back as they went in (money keeps its scale, times their
instant, bytes and nested JSON whole), rows go in in the given order, and a key already
there or twice in the list is inserted once and returned once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from refunds.db import insert_ignore_many
from refunds.models import MessageRecord, RawDeliveryRecord

AT = datetime(2025, 3, 1, 10, tzinfo=UTC)


def message_row(refund_id: str, price: str | None, **extra: object) -> dict[str, object]:
    return {"shop": "s.example", "refund_id": refund_id, "fingerprint": f"f-{refund_id}",
            "fingerprint_version": 2, "delivery_id": f"d-{refund_id}", "kind": "create",
            "occurred_at": AT, "created_at": None,
            "price": None if price is None else Decimal(price), "order_id": "o-1",
            "currency": "USD", "customer_id": None, "note": "quote \" and \\ and ünï",
            "line_items": None, "message": {"id": refund_id, "amount": "20.00", "nested": [1]},
            "recorded_at": AT, **extra}


def test_values_come_back_as_they_went_in(session: Session) -> None:
    later = datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    rows = [message_row("1", "20.00"), message_row("2", "0.10000000", created_at=later),
            message_row("3", None, line_items=[{"price": "1.50", "name": None}])]
    inserted = insert_ignore_many(session, MessageRecord, rows,
                                  ["shop", "refund_id", "fingerprint"], returning=("refund_id",))
    assert sorted(row.refund_id for row in inserted) == ["1", "2", "3"]
    stored = {m.refund_id: m for m in session.scalars(select(MessageRecord))}
    assert [str(stored[key].price) for key in ("1", "2")] == ["20.00", "0.10000000"]
    assert stored["3"].price is None
    assert stored["2"].created_at == later and stored["2"].created_at.tzinfo == UTC
    assert stored["1"].note == "quote \" and \\ and ünï"
    assert stored["1"].message == {"id": "1", "amount": "20.00", "nested": [1]}
    assert stored["3"].line_items == [{"price": "1.50", "name": None}]
    # in the given order (the ids are given in insertion order)
    assert sorted(stored, key=lambda key: stored[key].id) == ["1", "2", "3"]


def test_a_known_key_or_a_repeated_one_is_inserted_and_returned_once(session: Session) -> None:
    first = {"shop": "s.example", "delivery_id": "d-1", "body_sha256": "a" * 64,
             "topic": "refunds/create", "headers": {"x": "y"}, "body": b"\x00\xff{}",
             "received_at": AT, "archived_at": AT}
    key = ["shop", "delivery_id", "body_sha256"]
    assert len(insert_ignore_many(session, RawDeliveryRecord, [first], key,
                                  returning=("delivery_id",))) == 1
    second = {**first, "delivery_id": "d-2"}
    inserted = insert_ignore_many(session, RawDeliveryRecord, [first, second, second], key,
                                  returning=("delivery_id",))
    assert [row.delivery_id for row in inserted] == ["d-2"]
    bodies = {r.delivery_id: r.body for r in session.scalars(select(RawDeliveryRecord))}
    assert bodies == {"d-1": b"\x00\xff{}", "d-2": b"\x00\xff{}"}


def test_a_nul_in_json_is_stored_as_before(session: Session) -> None:
    # PostgreSQL keeps "\u0000" in a json value but cannot turn it back into text: such rows
    # go the way SQLAlchemy sends them (tests/fuzz.py carries a body with one in its tags)
    row = message_row("9", "1.00", message={"customer": {"tags": ["a\u0000"]}})
    assert len(insert_ignore_many(session, MessageRecord, [row],
                                  ["shop", "refund_id", "fingerprint"], returning=("id",))) == 1
    [stored] = session.scalars(select(MessageRecord))
    assert stored.message == {"customer": {"tags": ["a\u0000"]}}


def test_a_value_json_has_no_form_for_inside_a_json_column_is_refused(session: Session) -> None:
    row = message_row("8", "1.00", message={"amount": Decimal("1.00")})
    with pytest.raises((TypeError, StatementError)):  # SQLAlchemy wraps it on SQLite
        insert_ignore_many(session, MessageRecord, [row], ["shop", "refund_id", "fingerprint"])
