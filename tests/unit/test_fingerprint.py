"""Fingerprint version 2 is pinned: a change that would move the fingerprint of a message
already recorded (a new optional field, a new payload shape, another naive zone) fails here,
and a resend after such an upgrade would otherwise be recorded twice."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from payloads import (
    after_sale_event,
    camel_event,
    doc_example_event,
    doc_example_event_with,
    doc_line,
    snake_doc_line,
    snake_event,
    to_body,
)

from schemas import FINGERPRINT_VERSION, RefundMessage, parse_delivery
from schemas.fingerprint import content_v2, fingerprint_v2, money_text

pytestmark = pytest.mark.unit

RECEIVED = datetime(2025, 3, 1, 12, tzinfo=UTC)
MESSAGES: dict[str, dict[str, Any]] = {
    "camel": camel_event(status="fund_change", price="20.00", sku="128G;白色;", note="Note",
                         create_time="2025-02-28T09:00:00-04:00"),
    "snake": snake_event(refund_id="7002", status="in_progress", price="10.00", sku="SKU-2",
                         update_time="2025-03-02 08:00:00"),
    "after_sale": after_sale_event(refund_id="7003", status="refunded", price="5.50",
                                   rights_type="refund", rights_reason="damaged",
                                   update_time="2025-03-03T09:00:00-04:00"),
    "doc_example": doc_example_event(),
    "no_time": camel_event(refund_id="7004", update_time=None, price="1"),
}
GOLDEN = {
    "camel": "e865ce01fbf54926689da2840f845fabed058c60a4fe2029564421a102fb64b4",
    "snake": "1e11824cbe2a4c8b4d2a36dc27c23d03caab90202e18e57bf8bd97b81944f1da",
    "after_sale": "68e8805885d5cec2d5845de049797fc62f05694b57a07843b8e25ad05d664ebb",
    "doc_example": "a6353844efc6071cbb7728107177c7a28ad20d9ea0c128c6db6953ea263c3db5",
    "no_time": "7b856fc693ab74d87a762d35c2c1d98ed99db6a30216374fe786c6c937ed5036",
}


# Issue 12 keeps the line fields the sink used to drop, and a blank refund-line quantity no
# longer takes the ordered one. These fingerprints were computed with the code at commit
# 81b348889602ca210e82f38aa25744b26cc62238, before issue 12, and must not move.
LINE_MESSAGES: dict[str, dict[str, Any]] = {
    "doc_example": doc_example_event(),
    "blank_quantity": doc_example_event_with(doc_line(quantity="", ordered="2")),
    "no_quantity": doc_example_event_with(doc_line(quantity=None, ordered="1")),
    "snake_blank_quantity": doc_example_event_with(snake_doc_line(quantity="", ordered="2")),
    "no_quantity_anywhere": doc_example_event_with(snake_doc_line(quantity="", ordered="")),
}
LINE_GOLDEN = {
    "doc_example": "a6353844efc6071cbb7728107177c7a28ad20d9ea0c128c6db6953ea263c3db5",
    "blank_quantity": "49c27413d1b6a7ed6b5037292536393491e58d7c71382d9ef3772fcde8b47536",
    "no_quantity": "a6353844efc6071cbb7728107177c7a28ad20d9ea0c128c6db6953ea263c3db5",
    "snake_blank_quantity": "49c27413d1b6a7ed6b5037292536393491e58d7c71382d9ef3772fcde8b47536",
    "no_quantity_anywhere": "a68227a9a57c3f960046c579db25fe36852353bcd66e575952e5e8673e7996b9",
}
# "blank_quantity"'s line as refund_messages stored it at that commit (its `message` too).
STORED_BEFORE_ISSUE_12 = {
    "line_item_id": None, "product_id": "12901212", "variant_id": "12901312",
    "sku": "128G;白色;", "quantity": 2, "price": "10.00", "subtotal": "1", "total_tax": "0.00",
    "location_id": None,
}  # fmt: skip


def parse(payload: dict[str, Any], naive_tz: str = "UTC",
          received_at: datetime = RECEIVED) -> RefundMessage:
    return parse_delivery(to_body(payload), topic="refunds/create", shop="default",
                          triggered_at=None, received_at=received_at, naive_tz=naive_tz)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_golden_fingerprints_v2(name: str) -> None:
    assert FINGERPRINT_VERSION == 2
    assert parse(MESSAGES[name]).fingerprint == GOLDEN[name]


class UpgradedMessage(RefundMessage):
    """The message model as a later release might have it: one more optional field."""

    loyalty_points: int | None = 120


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_finding_2_a_new_optional_field_does_not_move_fingerprints(name: str) -> None:
    message = parse(MESSAGES[name])
    upgraded = UpgradedMessage(**dict(message))
    assert upgraded.model_dump()["loyalty_points"] == 120
    assert upgraded.fingerprint == message.fingerprint == GOLDEN[name]


@pytest.mark.parametrize("name", ["camel", "after_sale"])
def test_finding_2_naive_zone_does_not_move_messages_with_offsets(name: str) -> None:
    assert parse(MESSAGES[name], naive_tz="America/New_York").fingerprint == GOLDEN[name]


def test_a_time_taken_from_the_clock_is_not_content() -> None:
    later = datetime(2025, 3, 2, tzinfo=UTC)
    assert parse(MESSAGES["no_time"], received_at=later).fingerprint == GOLDEN["no_time"]


def test_equal_amounts_and_instants_have_one_canonical_form() -> None:
    amounts = ["20.00", "20", "2E+1", "0.50", "0.00"]
    assert [money_text(Decimal(a)) for a in amounts] == ["20", "20", "20", "0.5", "0"]
    base = parse(MESSAGES["camel"]).model_dump(mode="json")
    shifted = {**base, "occurred_at": "2025-03-01T05:00:00-05:00", "price": "20.0"}
    assert fingerprint_v2(shifted) == fingerprint_v2(base)


def test_contact_details_are_not_content() -> None:
    customer = {"id": "501", "email": "ann@example.com", "phone": "+15550100"}
    with_contact = parse(camel_event(customer=customer)).model_dump(mode="json")
    assert "ann@example.com" not in str(content_v2(with_contact))
    assert content_v2(with_contact)["customer_id"] == "501"


@pytest.mark.parametrize("name", sorted(LINE_MESSAGES))
def test_issue_12_line_fields_keep_the_fingerprints_from_before(name: str) -> None:
    assert parse(LINE_MESSAGES[name]).fingerprint == LINE_GOLDEN[name]


def test_a_message_recorded_before_issue_12_and_its_resend_are_one_content() -> None:
    # given a blank-quantity message as recorded before issue 12, and its payload parsed now
    resent = parse(LINE_MESSAGES["blank_quantity"])
    recorded = {**resent.model_dump(mode="json"), "line_items": [STORED_BEFORE_ISSUE_12]}
    # then the resend keeps the quantities apart, yet both have the recorded fingerprint
    assert resent.line_items is not None
    assert (resent.line_items[0].quantity, resent.line_items[0].ordered_quantity) == (None, 2)
    assert fingerprint_v2(recorded) == resent.fingerprint == LINE_GOLDEN["blank_quantity"]


def test_the_line_fields_issue_12_added_are_not_content() -> None:
    # given a line, and the same line with every field issue 12 added changed
    line = snake_doc_line(quantity="1", ordered="1", refund_line_id="55501")
    other = snake_doc_line(quantity="1", ordered="4", refund_line_id="55502")
    other["line_item"].update(
        current_quantity="3",
        discount_allocations=[{"amount": "9.99"}],
        tax_lines=[{"price": "0.50"}, {"price": "0.25"}],
    )
    # when both are parsed / then they are one content (a version 3 would be needed)
    first, second = (parse(doc_example_event_with(each)) for each in (line, other))
    assert first.line_items != second.line_items
    assert first.fingerprint == second.fingerprint == LINE_GOLDEN["doc_example"]
    # while the refunded quantity is content
    twice = parse(doc_example_event_with(snake_doc_line(quantity="2")))
    assert twice.fingerprint != first.fingerprint
