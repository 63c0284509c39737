"""Every money field Genstore sends on a refund line reaches the refund JSON and the stored
message exactly as sent (issue 12), through the real apply path on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from deliveries import apply, delivery, view
from payloads import camel_event, doc_example_event, doc_example_event_with, snake_doc_line
from sqlalchemy import select

from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import DeadLetter, MessageRecord, Refund
from refunds.settings import Settings

DOC_LINE = {
    "refund_line_id": None, "line_item_id": None, "product_id": "12901212",
    "variant_id": "12901312", "sku": "128G;白色;", "quantity": 1, "ordered_quantity": 1,
    "current_quantity": 1, "price": "10.00", "subtotal": "1", "total_tax": "0.00",
    "discount_allocations": [{"amount": "0.01"}], "tax_lines": [{"price": "10.00"}],
    "location_id": None,
}  # fmt: skip


def stored_line_items(settings: Settings) -> list[Any]:
    """Each recorded message's line items, as refund_messages.line_items holds them."""
    with session_factory(settings)() as session:
        rows = session.scalars(select(MessageRecord.line_items).order_by(MessageRecord.id))
        return list(rows)


def test_the_doc_example_line_reaches_the_refund_json_exactly(settings: Settings) -> None:
    # given Genstore's documented event / when applied
    outcome = apply(settings, delivery(doc_example_event()))
    # then the refund JSON's line carries every money field, Decimal strings unchanged
    assert outcome == Outcome.APPLIED
    assert view(settings, "10220473645")["line_items"] == [DOC_LINE]
    # and one message row stores the same line
    assert stored_line_items(settings) == [[DOC_LINE]]


def test_a_blank_refund_quantity_stays_blank_next_to_the_ordered_one(settings: Settings) -> None:
    # given a snake_case line with its own id, a blank refunded quantity, 2 ordered
    payload = doc_example_event_with(snake_doc_line(quantity="", ordered="2"))
    # when applied
    assert apply(settings, delivery(payload)) == Outcome.APPLIED
    # then the refunded quantity is not borrowed from the ordered one
    expected = {**DOC_LINE, "refund_line_id": "55501", "quantity": None, "ordered_quantity": 2}
    assert view(settings, "10220473645")["line_items"] == [expected]
    assert stored_line_items(settings) == [[expected]]


def test_a_resend_differing_only_in_the_new_line_fields_is_a_duplicate(
    settings: Settings,
) -> None:
    # given a refund recorded with its line
    first = doc_example_event_with(snake_doc_line(refund_line_id="55501"))
    assert apply(settings, delivery(first)) == Outcome.APPLIED
    # when the same refund comes again with only the fields issue 12 added changed
    line = snake_doc_line(refund_line_id="55502")
    line["line_item"].update(current_quantity="0", discount_allocations=[{"amount": "0.02"}])
    outcome = apply(settings, delivery(doc_example_event_with(line)))
    # then it is the same message (fingerprint v2 leaves them out): nothing of it is recorded
    assert outcome == Outcome.DUPLICATE_MESSAGE
    expected = {**DOC_LINE, "refund_line_id": "55501"}
    assert view(settings, "10220473645")["line_items"] == [expected]
    assert stored_line_items(settings) == [[expected]]


def test_a_bad_line_amount_is_a_dead_letter_and_records_nothing(settings: Settings) -> None:
    # given the documented line with a discount amount that is not an exact decimal
    line = snake_doc_line()
    line["line_item"]["discount_allocations"] = [{"amount": "-0.01"}]
    # when applied
    outcome = apply(settings, delivery(doc_example_event_with(line)))
    # then it is dead-lettered as invalid_payload, and no refund or message is stored
    assert outcome == Outcome.DEAD_LETTERED
    with session_factory(settings)() as session:
        assert session.scalars(select(DeadLetter.reason)).all() == ["invalid_payload"]
        assert session.scalars(select(Refund.refund_id)).all() == []
    assert stored_line_items(settings) == []


def test_tiny_amounts_stay_in_positional_notation_everywhere(settings: Settings) -> None:
    # given amounts Python's str() would write as "0E-8" and "1E-7"
    tiny = {"subtotal": "0.00000001", "totalTax": "0.0000001", "quantity": "1",
            "lineItem": {"price": "0.00000000", "discountAllocations": [{"amount": "0.00000000"}]}}
    first = camel_event(price="0.00000000", update_time="2025-03-01T10:00:00Z", lineItems=[tiny])
    change = camel_event(status="fund_change", price="0.0000001",
                         update_time="2025-03-01T10:05:00Z")
    # when applied
    apply(settings, delivery(first))
    apply(settings, delivery(change))
    # then the refund JSON says them as they were sent
    refund = view(settings, "7001")
    assert refund["refund_price"] == "0.0000001"
    assert refund["fund_changes"][0]["amount"] == "0.0000001"
    assert refund["fund_changes"][0]["previous_amount"] == "0.00000000"
    [line] = refund["line_items"]
    assert (line["price"], line["subtotal"], line["total_tax"]) == (
        "0.00000000", "0.00000001", "0.0000001")
    assert line["discount_allocations"] == [{"amount": "0.00000000"}]
