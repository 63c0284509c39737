"""parse_delivery: Genstore's three payload shapes in, one normalized RefundMessage out, or a
PayloadRejected with the dead-letter reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from payloads import (
    after_sale_event,
    camel_event,
    doc_example_event,
    doc_example_event_with,
    doc_line,
    snake_doc_line,
    snake_event,
    spec_sequence,
    to_body,
)

from schemas import LineItem, PayloadRejected, RefundMessage, parse_delivery

pytestmark = pytest.mark.unit

RECEIVED = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
SHAPES = [camel_event, snake_event, after_sale_event]
EMAIL, PHONE = "jane.doe@example.com", "+15550001111"
CUSTOMER = {"id": "42", "firstName": "Jane", "email": EMAIL, "phone": PHONE, "currency": "EUR"}


def parse(body: bytes, topic: str | None = "refunds/create", **kwargs: Any) -> RefundMessage:
    options: dict[str, Any] = {"shop": "default", "triggered_at": None, "received_at": RECEIVED}
    return parse_delivery(body, topic=topic, **{**options, **kwargs})


def rejected(body: bytes, topic: str | None = "refunds/create") -> PayloadRejected:
    with pytest.raises(PayloadRejected) as caught:
        parse(body, topic)
    return caught.value


def test_doc_example_parses_to_the_expected_message() -> None:
    # given Genstore's documented event / when parsed
    message = parse(to_body(doc_example_event()))
    # then every documented fact survives exactly
    assert (message.refund_id, message.order_id) == ("10220473645", "300141548096383")
    assert str(message.price) == "10.00"
    assert (message.kind, message.currency, message.customer_id) == ("in_progress", "USD", "1")
    assert message.occurred_at.isoformat() == "2024-12-31T00:00:00+00:00"
    assert message.time_source == "update_time"
    assert message.line_items is not None
    assert [item.model_dump() for item in message.line_items] == [
        {"refund_line_id": None, "line_item_id": None, "product_id": "12901212",
         "variant_id": "12901312", "sku": "128G;白色;", "quantity": 1, "ordered_quantity": 1,
         "current_quantity": 1, "price": Decimal("10.00"), "subtotal": Decimal("1"),
         "total_tax": Decimal("0.00"), "discount_allocations": ({"amount": Decimal("0.01")},),
         "tax_lines": ({"price": Decimal("10.00")},), "location_id": None}
    ]  # fmt: skip
    assert message.customer is not None
    assert message.customer.tags == ("xinsheng", "human")
    assert (message.customer.tax_exempt, message.customer.verified_email) == (True, True)


@pytest.mark.parametrize("sku", [None, "128G;白色;"])
def test_three_shapes_of_the_same_facts_normalize_alike(sku: str | None) -> None:
    # given the same facts in each shape
    facts = {"status": "refunded", "note": "Remboursé ✓", "sku": sku, "customer": CUSTOMER}
    # when each is parsed
    messages = [parse(to_body(shape(**facts))) for shape in SHAPES]
    # then the messages are equal but for the refunded quantity the older form leaves blank,
    # and their fingerprints are equal (a blank quantity reads as the ordered one there)
    dumps = [message.model_dump() for message in messages]
    for line in dumps[1]["line_items"] or []:
        assert (line["quantity"], line["ordered_quantity"]) == (None, 1)
        line["quantity"] = 1
    assert dumps[0] == dumps[1] == dumps[2]
    assert len({message.fingerprint for message in messages}) == 1
    assert (messages[0].line_items is None) == (sku is None)


def test_after_sale_form_carries_its_own_fields() -> None:
    payload = after_sale_event(rights_type="1", rights_reason="不想要了", rightsReasonType=2)
    payload["refund"]["shipping"] = "5.50"
    after_sale = parse(to_body(payload)).after_sale
    assert after_sale is not None
    assert after_sale.model_dump() == {
        "rights_type": "1", "rights_reason": "不想要了", "rights_reason_type": "2",
        "shipping": Decimal("5.50"),
    }  # fmt: skip


def test_spec_sequence_reads_as_three_kinds_in_time_order() -> None:
    messages = [parse(to_body(payload)) for payload in spec_sequence()]
    assert [(m.kind, str(m.price)) for m in messages] == [
        ("in_progress", "25.00"), ("fund_change", "20.00"), ("refunded", "20.00")
    ]  # fmt: skip
    assert sorted(messages, key=lambda m: m.occurred_at) == messages


@pytest.mark.parametrize(
    "raw_price", ["10.5", '"NaN"', "NaN", '"Infinity"', "Infinity", '"-1.00"', "-5", '"abc"',
                  '"1e3"', '"1' + "0" * 18 + '"', '"1.123456789"', "true", "[]", '"１０"'],
)  # fmt: skip
def test_money_that_is_not_an_exact_decimal_is_invalid(raw_price: str) -> None:
    body = to_body(camel_event()).replace(b'"25.00"', raw_price.encode())
    error = rejected(body)
    assert error.reason == "invalid_payload"
    assert error.errors[0]["loc"] == ["refund", "refundPrice"]


@pytest.mark.parametrize(
    "raw_price", ['"0"', "0", "12", '" 7.5 "', '"123456789012345678.12345678"']
)
def test_exact_money_is_accepted_with_its_scale(raw_price: str) -> None:
    body = to_body(camel_event()).replace(b'"25.00"', raw_price.encode())
    assert str(parse(body).price) == str(json.loads(raw_price)).strip()


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe{}", b"[1, 2]", b'"text"', b"", b"{"])
def test_bodies_that_are_not_json_objects_are_invalid_json(body: bytes) -> None:
    assert rejected(body).reason == "invalid_json"


@pytest.mark.parametrize("topic", [None, "", "orders/create", "refund/create", "Refunds/create"])
def test_other_topics_are_unsupported_before_the_body_is_read(topic: str | None) -> None:
    assert rejected(b"not json", topic).reason == "unsupported_topic"


def test_any_refunds_topic_is_processed() -> None:
    assert parse(to_body(camel_event()), "refunds/update").refund_id == "7001"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(None, "in_progress"), ("", "in_progress"), ("Processing", "in_progress"),
     ("pending", "in_progress"), ("in progress", "in_progress"), ("SUCCESS", "refunded"),
     ("succeeded", "refunded"), ("completed", "refunded"), ("fund-changed", "fund_change")],
)  # fmt: skip
def test_status_aliases_map_to_kinds(status: str | None, kind: str) -> None:
    assert parse(to_body(camel_event(status=status))).kind == kind


@pytest.mark.parametrize("key", ["refundStatus", "refund_status"])
def test_status_alias_keys_are_read(key: str) -> None:
    assert parse(to_body(camel_event(**{key: "refunded"}))).kind == "refunded"


def test_unknown_status_is_its_own_reason() -> None:
    assert rejected(to_body(camel_event(status="cancelled"))).reason == "unknown_status"


def test_deep_nesting_is_rejected_not_a_crash() -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"refund": ' + b"[" * 100_000):
        assert rejected(body).reason in ("invalid_json", "invalid_payload")


def test_huge_numbers_are_rejected_not_a_crash() -> None:
    body = to_body(camel_event()).replace(b'"25.00"', b"9" * 5000)
    assert rejected(body).reason in ("invalid_json", "invalid_payload")


@pytest.mark.parametrize("refund_id", [None, "", "  ", 7001.0, True, {"id": 1}, "9" * 65])
def test_missing_or_malformed_refund_ids_are_invalid(refund_id: object) -> None:
    payload = camel_event()
    payload["refund"]["id"] = refund_id
    assert rejected(to_body(payload)).reason == "invalid_payload"


def test_integer_ids_and_a_bare_refund_object_are_accepted() -> None:
    bare = camel_event(refund_id=7001, order_id=9001)["refund"]  # type: ignore[arg-type]
    message = parse(to_body(bare))
    assert (message.refund_id, message.order_id) == ("7001", "9001")


def test_string_flags_tags_and_blank_quantity_are_read_leniently() -> None:
    customer = {"taxExempt": "false", "verifiedEmail": "0", "tags": "vip, repeat"}
    payload = snake_event(sku="X1", customer=customer)
    message = parse(to_body(payload))
    assert message.customer is not None
    assert (message.customer.tax_exempt, message.customer.verified_email) == (False, False)
    assert message.customer.tags == ("vip", "repeat")
    assert message.line_items is not None
    line = message.line_items[0]
    assert (line.quantity, line.ordered_quantity) == (None, 1)  # "" is not the item's "1"


@pytest.mark.parametrize(
    ("text", "naive_tz", "expected"),
    [("2013-06-27T08:48:27-04:00", "UTC", "2013-06-27T12:48:27+00:00"),
     ("2025-03-01T10:00:00Z", "Asia/Shanghai", "2025-03-01T10:00:00+00:00"),
     ("2024-12-31 00:00:00", "UTC", "2024-12-31T00:00:00+00:00"),
     ("2024-12-31 00:00:00", "Asia/Shanghai", "2024-12-30T16:00:00+00:00")],
)  # fmt: skip
def test_both_time_formats_end_in_utc(text: str, naive_tz: str, expected: str) -> None:
    message = parse(to_body(camel_event(update_time=text)), naive_tz=naive_tz)
    assert message.occurred_at.isoformat() == expected


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01 00:00:00", "0001-01-01T00:00:00+01:00"])
def test_unreadable_times_are_invalid(text: str) -> None:
    assert rejected(to_body(camel_event(update_time=text))).reason == "invalid_payload"


def test_time_falls_back_from_update_to_create_to_header_to_receipt() -> None:
    created = camel_event(update_time=None, create_time="2025-03-01 09:00:00")
    bare = to_body(camel_event(update_time=None))
    assert parse(to_body(created)).time_source == "create_time"
    header = parse(bare, triggered_at="2025-03-01T11:00:00+08:00")
    assert (header.time_source, header.occurred_at.hour) == ("triggered_at", 3)
    for triggered_at in (None, "garbage"):
        late = parse(bare, triggered_at=triggered_at)
        assert (late.time_source, late.occurred_at) == ("received_at", RECEIVED)


@pytest.mark.parametrize("field", ["note", "orderId"])
def test_nul_characters_are_invalid_as_no_database_text_can_hold_them(field: str) -> None:
    assert rejected(to_body(camel_event(**{field: "a\x00b"}))).reason == "invalid_payload"


def test_line_items_absent_empty_and_unknown_keys() -> None:
    assert parse(to_body(camel_event())).line_items is None
    assert parse(to_body(camel_event(lineItems=[], somethingNew={"x": 1}))).line_items == ()


def line_of(*lines: dict[str, Any]) -> LineItem:
    items = parse(to_body(doc_example_event_with(*lines))).line_items
    assert items is not None
    return items[0]


def test_every_money_field_of_a_line_is_kept_exactly_in_both_spellings() -> None:
    # given the documented line, in camelCase and in snake_case with the line's own id
    # when each is parsed
    camel, snake = line_of(doc_line()), line_of(snake_doc_line(refund_line_id="55501"))
    # then both keep every field, amounts with the scale Genstore sent
    assert snake.model_dump(mode="json") == {
        "refund_line_id": "55501", "line_item_id": None, "product_id": "12901212",
        "variant_id": "12901312", "sku": "128G;白色;", "quantity": 1, "ordered_quantity": 1,
        "current_quantity": 1, "price": "10.00", "subtotal": "1", "total_tax": "0.00",
        "discount_allocations": [{"amount": "0.01"}], "tax_lines": [{"price": "10.00"}],
        "location_id": None,
    }  # fmt: skip
    assert camel == snake.model_copy(update={"refund_line_id": None})


@pytest.mark.parametrize("build", [doc_line, snake_doc_line])
@pytest.mark.parametrize(
    ("quantity", "ordered", "expected"),
    [("3", "5", (3, 5)), ("", "5", (None, 5)), (None, "5", (None, 5)), ("0", "", (0, None)),
     ("", "", (None, None))],
)  # fmt: skip
def test_the_refunded_quantity_is_never_borrowed_from_the_ordered_one(
    build: Any, quantity: str | None, ordered: str, expected: tuple[int | None, int | None]
) -> None:
    line = line_of(build(quantity=quantity, ordered=ordered))
    assert (line.quantity, line.ordered_quantity) == expected


def test_blank_line_lists_are_absent_and_an_empty_one_is_kept() -> None:
    # given blanks where Genstore is loose, and an empty list
    line = doc_line()
    line["lineItem"].update(discountAllocations="", taxLines=[], currentQuantity="")
    blanks = doc_line()
    blanks["lineItem"].update(discountAllocations=[{"amount": ""}], taxLines=[{"price": None}])
    # when parsed / then a blank is None, [] stays (), a blank amount is None
    read = line_of(line)
    assert (read.discount_allocations, read.tax_lines, read.current_quantity) == (None, (), None)
    stored = line_of(blanks).model_dump(mode="json")
    assert stored["discount_allocations"] == [{"amount": None}]
    assert stored["tax_lines"] == [{"price": None}]
    assert line_of(camel_event(sku="X1")["refund"]["lineItems"][0]).tax_lines is None


LINE_MONEY = [  # where a line's money sits, in each spelling
    (doc_line, "lineItem", "discountAllocations", "amount"),
    (doc_line, "lineItem", "taxLines", "price"),
    (snake_doc_line, "line_item", "discount_allocations", "amount"),
    (snake_doc_line, "line_item", "tax_lines", "price"),
]


@pytest.mark.parametrize(("build", "item", "entries", "key"), LINE_MONEY)
@pytest.mark.parametrize("bad", ["-0.01", "1e-2", 0.01, "abc", "0.123456789", True, "１"])
def test_a_bad_line_amount_rejects_the_delivery(
    build: Any, item: str, entries: str, key: str, bad: object
) -> None:
    line = build()
    line[item][entries] = [{key: "1.00"}, {key: bad}]
    error = rejected(to_body(doc_example_event_with(line)))
    assert error.reason == "invalid_payload"
    assert error.errors[0]["loc"] == ["refund", "lineItems", 0, item, entries, 1, key]


@pytest.mark.parametrize(("build", "item", "entries"), [where[:3] for where in LINE_MONEY])
@pytest.mark.parametrize("bad_shape", ["0.01", {"amount": "0.01", "price": "0.01"}, ["0.01"], 1])
def test_line_money_in_another_shape_rejects_the_delivery(
    build: Any, item: str, entries: str, bad_shape: object
) -> None:
    line = build()
    line[item][entries] = bad_shape
    assert rejected(to_body(doc_example_event_with(line))).reason == "invalid_payload"


@pytest.mark.parametrize("bad", ["1.5", "-1", "many"])
def test_a_bad_current_quantity_rejects_the_delivery(bad: str) -> None:
    line = snake_doc_line()
    line["line_item"]["current_quantity"] = bad
    error = rejected(to_body(doc_example_event_with(line)))
    assert error.errors[0]["loc"] == ["refund", "lineItems", 0, "line_item", "current_quantity"]


def test_errors_and_reprs_never_show_contact_details() -> None:
    # given a payload with contact details and a bad field next to them
    bad_customer = {**CUSTOMER, "email": {"value": EMAIL}, "phone": [PHONE]}
    payloads = [camel_event(price="-1", customer=CUSTOMER), camel_event(customer=bad_customer)]
    for payload in payloads:
        # when it is rejected
        error = rejected(to_body(payload))
        # then neither the detail nor the errors hold the contact details, nor any input
        shown = f"{error} {error.detail} {json.dumps(error.errors)}"
        assert EMAIL not in shown and PHONE not in shown
        assert all(set(item) == {"loc", "msg", "type"} for item in error.errors)
        assert "\n" not in error.detail and " validation error" in error.detail
    message = parse(to_body(camel_event(customer=CUSTOMER)))
    assert EMAIL not in repr(message) and PHONE not in str(message)


def test_fingerprint_ignores_delivery_details_but_not_content() -> None:
    payload = camel_event(note="n", sku="s")
    reordered = dict(reversed(list(payload["refund"].items())))
    spaced = json.dumps({"refund": reordered}, indent=4).encode()
    same = parse(spaced, shop="default", triggered_at="2030-01-01T00:00:00Z").fingerprint
    assert parse(to_body(payload)).fingerprint == same
    assert parse(to_body(camel_event(note="n", sku="s", price="25.01"))).fingerprint != same
    # the shop is not content: messages are unique per (shop, refund id, fingerprint)
    assert parse(to_body(payload), shop="other").fingerprint == same


def test_fingerprint_ignores_a_time_taken_at_receipt_only() -> None:
    body = to_body(camel_event(update_time=None))
    first = parse(body, received_at=RECEIVED)
    again = parse(body, received_at=RECEIVED + timedelta(minutes=5))
    assert first.fingerprint == again.fingerprint
    early, later = (camel_event(update_time=f"2025-03-01 10:0{m}:00") for m in (0, 1))
    assert parse(to_body(early)).fingerprint != parse(to_body(later)).fingerprint


ids = st.from_regex(r"[1-9][0-9]{0,18}", fullmatch=True)
texts = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)
zones = st.integers(-14 * 60, 14 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))
moments = st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=zones)
amounts = st.decimals(min_value=0, max_value=10**12, places=2).map(lambda d: f"{d:.2f}")


@settings(deadline=None, max_examples=150)
@given(st.sampled_from(SHAPES), ids, ids, amounts, texts, texts, moments)
def test_random_facts_survive_every_shape(
    shape: Any, refund_id: str, order_id: str, price: str, note: str, sku: str, at: datetime
) -> None:
    # given random facts in a random shape / when built and parsed
    payload = shape(refund_id, order_id, "refunded", price, at.isoformat(), None, note, sku)
    message = parse(to_body(payload))
    # then the normalized facts are the inputs
    assert (message.refund_id, message.order_id, message.note) == (refund_id, order_id, note)
    assert str(message.price) == price and message.occurred_at == at
    assert message.line_items is not None and message.line_items[0].sku == sku


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
refund_like = st.fixed_dictionaries(
    {"id": json_values | ids}, optional={"refundPrice": json_values, "status": json_values,
                                         "updateTime": json_values, "lineItems": json_values,
                                         "customer": json_values},
)  # fmt: skip


@settings(deadline=None, max_examples=300)
@given(st.binary() | json_values.map(lambda v: json.dumps(v).encode()) | refund_like.map(
    lambda refund: json.dumps({"refund": refund}).encode()))  # fmt: skip
def test_any_body_gives_a_message_or_a_rejection(body: bytes) -> None:
    try:
        assert isinstance(parse(body), RefundMessage)
    except PayloadRejected as error:
        assert error.reason in ("invalid_json", "invalid_payload", "unknown_status")
