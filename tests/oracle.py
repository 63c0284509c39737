"""An independent, deliberately plain reading of the SPEC's processing rules: replay one
refund's distinct messages in time order and keep the running state."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

KINDS = {"in_progress": "in_progress", "refunded": "refunded", "fund_change": "fund_change"}


def _refund(payload: dict[str, Any]) -> dict[str, Any]:
    return payload.get("refund", payload)  # type: ignore[no-any-return]


def _time(payload: dict[str, Any]) -> datetime:
    refund = _refund(payload)
    raw = refund.get("updateTime") or refund.get("createTime")
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def _price(payload: dict[str, Any]) -> str | None:
    refund = _refund(payload)
    value = refund.get("refundPrice", refund.get("amount"))
    return None if value in (None, "") else str(value)


def expected_state(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """The refund a set of (possibly repeated) payloads must produce; content-equal payloads
    count once. Payloads of one refund are expected to carry distinct times."""
    distinct = {json.dumps(p, sort_keys=True): p for p in payloads}.values()
    status, price, note, changes = "in_progress", None, None, []
    for payload in sorted(distinct, key=_time):
        kind = KINDS[_refund(payload).get("status", "in_progress")]
        if kind == "refunded":
            status = "refunded"
        if kind == "fund_change":
            changes.append({"amount": _price(payload), "previous_amount": price})
        if _price(payload) is not None:
            price = _price(payload)
        if _refund(payload).get("note") not in (None, ""):  # Genstore's "" means absent
            note = _refund(payload)["note"]
    return {
        "status": status,
        "refund_price": None if price is None else str(Decimal(price)),
        "note": note,
        "fund_changes": changes,
        "events_applied": len(distinct),
    }


def actual_state(view: dict[str, Any]) -> dict[str, Any]:
    """The same facts out of a refund as the API returns it."""
    return {
        "status": view["status"],
        "refund_price": view["refund_price"],
        "note": view["note"],
        "fund_changes": [
            {"amount": c["amount"], "previous_amount": c["previous_amount"]}
            for c in view["fund_changes"]
        ],
        "events_applied": view["events_applied"],
    }
