"""The content fingerprint that decides "the same message": version 2.

A fingerprint must never move for a message already recorded, or a resend after an upgrade is
recorded twice. So it is computed over an explicit list of content fields (`FIELDS`,
`LINE_ITEM_FIELDS`, `AFTER_SALE_FIELDS`), never over the whole model, and over canonical
forms: times in UTC (`2025-03-01T10:00:00Z`), money as normalized decimals (`20.00` and `20`
are one amount), absent values left out, keys sorted. It reads the message's JSON form
(`RefundMessage.model_dump(mode="json")`), which is also what `refund_messages.message` stores,
so a migration can recompute it from stored rows.

Left out on purpose: the shop and refund id (the unique key already holds them), how the time
was found, and the customer's contact details (not refund facts; erased on request).
A change to any of this is a new version, with the golden tests (tests/unit/test_fingerprint.py)
showing the old one unchanged.

A line's quantity (issue 12). Before issue 12 a line's `quantity` held the refund line's
quantity or, when Genstore left that blank, the ordered item's; since then `quantity` is the
refund line's alone (None when blank) and the ordered one is `ordered_quantity`. Version 2
reads a line's quantity as `quantity`, else `ordered_quantity`: exactly what `quantity` held
before, so a message already recorded (whose stored JSON has no `ordered_quantity`) and a
resend of its payload after the upgrade both keep their fingerprint. The cost: a blank refund
quantity and one equal to the ordered quantity are the same content.

The other line fields issue 12 added (`refund_line_id`, `current_quantity`,
`discount_allocations`, `tax_lines`, and `ordered_quantity` beyond the fallback above) are not
content: counting them would move the fingerprint of every message with line items. So two
deliveries that differ only in them are one message, the later one a duplicate whose values
are not recorded. Making them content takes a version 3 (and a migration recomputing the
stored fingerprints, as 0002 did for version 2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

VERSION = 2
TIMES = ("occurred_at", "created_at")
MONEY = ("price", "subtotal", "total_tax", "shipping")
FIELDS = ("kind", "occurred_at", "created_at", "price", "currency", "order_id", "customer_id",
          "note")  # fmt: skip
LINE_ITEM_FIELDS = ("line_item_id", "product_id", "variant_id", "sku", "quantity", "price",
                    "subtotal", "total_tax", "location_id")  # fmt: skip
AFTER_SALE_FIELDS = ("rights_type", "rights_reason", "rights_reason_type", "shipping")
# A time the sink took from its own clock (no time in the message or its headers) is not the
# message's: resends of such a message are known by content alone.
CLOCK_TIME_SOURCE = "received_at"


def fingerprint_v2(message: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical content of a message in its JSON form."""
    canonical = json.dumps(content_v2(message), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def content_v2(message: Mapping[str, Any]) -> dict[str, Any]:
    """The fields that make a message what it is, canonical, absent ones left out."""
    fields = [name for name in FIELDS
              if not (name == "occurred_at" and message.get("time_source") == CLOCK_TIME_SOURCE)]
    content = _canonical(message, fields)
    items = message.get("line_items")
    if items is not None:  # [] (no items) and absent (not said) are different facts
        content["line_items"] = [_line_content(item) for item in items]
    after_sale = _canonical(message.get("after_sale") or {}, AFTER_SALE_FIELDS)
    if after_sale:
        content["after_sale"] = after_sale
    return content


def _line_content(item: Mapping[str, Any]) -> dict[str, Any]:
    """A line's content; a blank refund quantity reads as the ordered one (module docstring)."""
    content = _canonical(item, LINE_ITEM_FIELDS)
    if "quantity" not in content and item.get("ordered_quantity") is not None:
        content["quantity"] = item["ordered_quantity"]
    return content


def _canonical(values: Mapping[str, Any], names: Any) -> dict[str, Any]:
    found = {}
    for name in names:
        value = values.get(name)
        if value is not None:
            found[name] = _canonical_value(name, value)
    return found


def _canonical_value(name: str, value: Any) -> Any:
    if name in TIMES:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if name in MONEY:
        return money_text(Decimal(value))
    return value


def money_text(amount: Decimal) -> str:
    """`20.00`, `20` and `2E+1` as `20`; `0.50` as `0.5`."""
    if amount == 0:
        return "0"
    return format(amount.normalize(), "f")
