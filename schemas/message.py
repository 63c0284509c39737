"""The one normalized message the core consumes, and `parse_delivery`, which turns a raw
delivery into it or says, with a dead-letter reason, why it cannot."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.body import json_bytes
from schemas.errors import PayloadRejected as PayloadRejected
from schemas.errors import rejection
from schemas.fingerprint import fingerprint_v2
from schemas.genstore import (
    WireCustomer,
    WireEnvelope,
    WireItemDetail,
    WireLineItem,
    WireRefund,
)
from schemas.types import Amount, UtcTime, as_utc, parse_time

Kind = Literal["in_progress", "refunded", "fund_change"]
TimeSource = Literal["update_time", "create_time", "triggered_at", "received_at"]

_KINDS: dict[str, Kind] = {
    "in_progress": "in_progress",
    "processing": "in_progress",
    "pending": "in_progress",
    "refunded": "refunded",
    "success": "refunded",
    "succeeded": "refunded",
    "completed": "refunded",
    "fund_change": "fund_change",
    "fund_changed": "fund_change",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class DiscountAllocation(_Frozen):
    amount: Amount | None


class TaxLine(_Frozen):
    price: Amount | None


class LineItem(_Frozen):
    """One refund line as `refund_messages.line_items` stores it and the refund JSON returns
    it. Each quantity is its own: `quantity` is the refunded one (None when Genstore leaves
    it blank), `ordered_quantity` and `current_quantity` the ordered item's, since finance
    reconciles one against the others. Rows stored before issue 12 lack `refund_line_id`,
    `ordered_quantity`, `current_quantity`, `discount_allocations` and `tax_lines`, and their
    `quantity` fell back to the ordered quantity when the refund line's was blank."""

    refund_line_id: str | None
    line_item_id: str | None
    product_id: str | None
    variant_id: str | None
    sku: str | None
    quantity: int | None
    ordered_quantity: int | None
    current_quantity: int | None
    price: Amount | None
    subtotal: Amount | None
    total_tax: Amount | None
    discount_allocations: tuple[DiscountAllocation, ...] | None
    tax_lines: tuple[TaxLine, ...] | None
    location_id: str | None


class Customer(_Frozen):
    id: str | None
    first_name: str | None = Field(repr=False)
    last_name: str | None = Field(repr=False)
    email: str | None = Field(repr=False)
    phone: str | None = Field(repr=False)
    tags: tuple[str, ...]
    tax_exempt: bool | None
    verified_email: bool | None
    currency: str | None
    state: str | None


class AfterSale(_Frozen):
    rights_type: str | None
    rights_reason: str | None
    rights_reason_type: str | None
    shipping: Amount | None


class RefundMessage(_Frozen):
    shop: str
    refund_id: str
    order_id: str | None
    kind: Kind
    occurred_at: UtcTime
    time_source: TimeSource
    created_at: UtcTime | None
    price: Amount | None
    currency: str | None
    note: str | None
    customer_id: str | None
    line_items: tuple[LineItem, ...] | None
    customer: Customer | None
    after_sale: AfterSale | None

    @functools.cached_property
    def fingerprint(self) -> str:
        """What makes two deliveries "the same message" (`schemas.fingerprint`,
        its version 2). Computed once per message: the apply path needs it more than
        once."""
        return fingerprint_v2(self.model_dump(mode="json"))


def parse_delivery(
    body: bytes,
    *,
    topic: str | None,
    shop: str,
    triggered_at: str | None,
    received_at: datetime,
    naive_tz: str = "UTC",
    shop_currency: str | None = None,
) -> RefundMessage:
    """The delivery as one RefundMessage, or PayloadRejected naming the dead-letter reason.
    `naive_tz` is a zone name already checked (the shop's zone, else GENSTORE_NAIVE_TZ).
    A refund without a currency takes `shop_currency` (the shop's, when it is known), else
    its customer's: the customer's currency is theirs, not necessarily the shop's."""
    if topic is None or not topic.startswith("refunds/"):
        raise PayloadRejected("unsupported_topic", f"topic {topic!r:.80} is not a refunds/ topic")
    zone = ZoneInfo(naive_tz)
    refund = _validate(body, zone).refund
    occurred_at, source = _occurrence(refund, triggered_at, received_at, zone)
    return RefundMessage(
        shop=shop,
        refund_id=refund.id,
        order_id=refund.order_id,
        kind=_kind(refund.status),
        occurred_at=occurred_at,
        time_source=source,
        created_at=refund.create_time,
        price=refund.price,
        currency=refund.currency or shop_currency
        or (refund.customer.currency if refund.customer else None),
        note=refund.note,
        customer_id=refund.customer_id or (refund.customer.id if refund.customer else None),
        line_items=_line_items(refund.line_items),
        customer=_customer(refund.customer),
        after_sale=_after_sale(refund),
    )


def _validate(body: bytes, zone: ZoneInfo) -> WireEnvelope:
    """Parse once, from the raw bytes (less a BOM); whatever goes wrong becomes a
    PayloadRejected."""
    try:
        return WireEnvelope.model_validate_json(json_bytes(body), context={"naive_tz": zone})
    except ValidationError as exc:
        raise rejection(exc) from None
    except Exception as exc:  # the parser must never crash a worker
        raise PayloadRejected("invalid_payload", f"unparseable: {type(exc).__name__}") from None


def _kind(status: str | None) -> Kind:
    if status is None:
        return "in_progress"
    kind = _KINDS.get(status.lower().replace(" ", "_").replace("-", "_"))
    if kind is None:
        raise PayloadRejected("unknown_status", "refund status is not a known refund status")
    return kind


def _occurrence(
    refund: WireRefund, triggered_at: str | None, received_at: datetime, zone: ZoneInfo
) -> tuple[datetime, TimeSource]:
    """The message's own time if it has one, else the sender's, else the receiver's."""
    if refund.update_time is not None:
        return refund.update_time, "update_time"
    if refund.create_time is not None:
        return refund.create_time, "create_time"
    if triggered_at:
        try:
            return parse_time(triggered_at, zone), "triggered_at"
        except ValueError:
            pass  # a header we cannot read is no worse than no header
    return as_utc(received_at), "received_at"


def _line_items(items: list[WireLineItem] | None) -> tuple[LineItem, ...] | None:
    if items is None:
        return None
    return tuple(_line_item(item) for item in items)


def _line_item(item: WireLineItem) -> LineItem:
    """The refund line's own values and the ordered item's, side by side. Only the ordered
    item's id stands in for a blank `line_item_id` (both name the ordered item); a blank
    refunded quantity stays None, as the ordered quantity is another fact."""
    detail = item.detail or WireItemDetail()
    allocations, tax_lines = detail.discount_allocations, detail.tax_lines
    return LineItem(
        refund_line_id=item.id,
        line_item_id=item.line_item_id or detail.id,
        product_id=detail.product_id,
        variant_id=detail.variant_id,
        sku=detail.sku,
        quantity=item.quantity,
        ordered_quantity=detail.quantity,
        current_quantity=detail.current_quantity,
        price=detail.price,
        subtotal=item.subtotal,
        total_tax=item.total_tax,
        # None (not said) and () (none) stay apart, as for line_items themselves
        discount_allocations=None
        if allocations is None
        else tuple(DiscountAllocation(amount=entry.amount) for entry in allocations),
        tax_lines=None if tax_lines is None else tuple(TaxLine(price=t.price) for t in tax_lines),
        location_id=item.location_id,
    )


def _customer(customer: WireCustomer | None) -> Customer | None:
    return None if customer is None else Customer(**customer.model_dump())


def _after_sale(refund: WireRefund) -> AfterSale | None:
    fields = AfterSale.model_fields
    values = {name: getattr(refund, name) for name in fields}
    return None if all(value is None for value in values.values()) else AfterSale(**values)
