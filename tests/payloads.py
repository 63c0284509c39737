"""Payload builders: the same refund facts written in each of Genstore's three shapes.

Keys whose argument is None are left out; `extra` keys go into the refund object as given.
Line items are carried (by the camelCase and snake_case shapes) only when a sku is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "genstore-refund-event.json"
PRODUCT_ID = "12901212"
VARIANT_ID = "12901312"


def _present(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def camel_event(
    refund_id: str = "7001",
    order_id: str | None = "9001",
    status: str | None = None,
    price: str | None = "25.00",
    update_time: str | None = "2025-03-01T10:00:00Z",
    create_time: str | None = None,
    note: str | None = None,
    sku: str | None = None,
    customer: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The documented `refunds/create` event."""
    items = None
    if sku is not None:
        detail = _present(productId=PRODUCT_ID, variantId=VARIANT_ID, sku=sku, price=price)
        line = {"quantity": "1", "lineItem": {**detail, "quantity": "1"}, "totalTax": "0.00"}
        items = [{**line, **_present(subtotal=price)}]
    refund = _present(
        id=refund_id, orderId=order_id, status=status, refundPrice=price, updateTime=update_time,
        createTime=create_time, note=note, lineItems=items, customer=customer,
    )  # fmt: skip
    return {"refund": {**refund, **extra}}


def snake_event(
    refund_id: str = "7001",
    order_id: str | None = "9001",
    status: str | None = None,
    price: str | None = "25.00",
    update_time: str | None = "2025-03-01T10:00:00Z",
    create_time: str | None = None,
    note: str | None = None,
    sku: str | None = None,
    customer: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The older form: snake_case line items, "" for blanks, quantity only on the item."""
    items = None
    if sku is not None:
        detail = _present(product_id=PRODUCT_ID, variant_id=VARIANT_ID, sku=sku, price=price)
        line = {"line_item": {**detail, "id": "", "quantity": "1"}, "line_item_id": ""}
        blanks = {"quantity": "", "location_id": "", "total_tax": "0.00"}
        items = [{**line, **blanks, **_present(subtotal=price)}]
    refund = _present(
        id=refund_id, orderId=order_id, status=status, refundPrice=price, updateTime=update_time,
        createTime=create_time, note=note, lineItems=items, customer=customer,
    )  # fmt: skip
    return {"refund": {**refund, **extra}}


def after_sale_event(
    refund_id: str = "7001",
    order_id: str | None = "9001",
    status: str | None = None,
    price: str | None = "25.00",
    update_time: str | None = "2025-03-01T10:00:00Z",
    create_time: str | None = None,
    note: str | None = None,
    sku: str | None = None,
    customer: dict[str, Any] | None = None,
    rights_type: str | None = None,
    rights_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The after-sale form: `refundId` and `amount`; a sku, if given, goes in camelCase
    line items as in the event."""
    base = camel_event(refund_id, order_id, status, price, update_time, create_time, note, sku)
    refund = base["refund"]
    refund["refundId"] = refund.pop("id")
    if "refundPrice" in refund:
        refund["amount"] = refund.pop("refundPrice")
    after = _present(rightsType=rights_type, rightsReason=rights_reason, customer=customer)
    return {"refund": {**refund, **after, **extra}}


def doc_example_event() -> dict[str, Any]:
    """Genstore's documented event (refund 10220473645, sku "128G;白色;")."""
    loaded: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return loaded


def doc_line(quantity: str | None = "1", ordered: str | None = "1") -> dict[str, Any]:
    """The documented event's refund line (camelCase) with every money field Genstore sends on
    a line; `quantity` is the refund line's, `ordered` the ordered item's (None: key absent)."""
    detail = {
        "productId": PRODUCT_ID, "variantId": VARIANT_ID, "sku": "128G;白色;", "price": "10.00",
        "discountAllocations": [{"amount": "0.01"}], "currentQuantity": "1",
        "taxLines": [{"price": "10.00"}], **_present(quantity=ordered),
    }  # fmt: skip
    return {"totalTax": "0.00", **_present(quantity=quantity), "lineItem": detail, "subtotal": "1"}


def snake_doc_line(
    quantity: str | None = "1", ordered: str | None = "1", refund_line_id: str = "55501"
) -> dict[str, Any]:
    """The same line in the older snake_case form, "" for blanks, with the refund line's own
    `id` (which the camelCase event does not carry)."""
    detail = {
        "id": "", "product_id": PRODUCT_ID, "variant_id": VARIANT_ID, "sku": "128G;白色;",
        "price": "10.00", "discount_allocations": [{"amount": "0.01"}], "current_quantity": "1",
        "tax_lines": [{"price": "10.00"}], **_present(quantity=ordered),
    }  # fmt: skip
    line = {"id": refund_line_id, "line_item_id": "", "location_id": "", "total_tax": "0.00"}
    return {**line, **_present(quantity=quantity), "line_item": detail, "subtotal": "1"}


def doc_example_event_with(*lines: dict[str, Any]) -> dict[str, Any]:
    """The documented event with these refund lines in place of its own."""
    payload = doc_example_event()
    payload["refund"]["lineItems"] = list(lines)
    return payload


def spec_sequence() -> list[dict[str, Any]]:
    """SPEC's example: in progress at 25.00, a fund change to 20.00, then refunded."""
    return [
        camel_event(status="in_progress", price="25.00", update_time="2025-03-01T10:00:00Z"),
        camel_event(status="fund_change", price="20.00", update_time="2025-03-01T10:05:00Z"),
        camel_event(status="refunded", price="20.00", update_time="2025-03-01T10:09:00Z"),
    ]


def to_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")
