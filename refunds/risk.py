"""The risk rules as pure functions of a refund's state, their parameters
(`refunds.risk_rules`) and, for `customer_velocity`, the creation times of the customer's
refunds around this one. `refunds.flags` evaluates them and raises what they find."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from refunds.risk_rules import AmountOver, CustomerVelocity, RiskRules, Rule, StuckInProgress
from refunds.state import IN_PROGRESS

Details = dict[str, Any]  # the figures that raised a flag, JSON-ready (money and times as text)
Created = Sequence[tuple[datetime, int]]  # (creation time, refunds created then)


class RefundFacts(Protocol):
    """What the rules read of a refund (a `Refund` row as the fold left it)."""

    status: str
    refund_price: Decimal | None
    currency: str | None
    customer_id: str | None
    line_items: list[Any] | None
    fund_changes: list[Any]
    created_at: datetime | None
    refunded_at: datetime | None


def amount_over(refund: RefundFacts, params: AmountOver) -> Details | None:
    threshold = params.threshold_for(refund.currency)
    price = refund.refund_price
    if price is None or price <= threshold:
        return None
    return {"price": str(price), "currency": refund.currency, "threshold": str(threshold)}


def over_line_items(refund: RefundFacts) -> Details | None:
    """The price above the sum of the line items' subtotal and tax; only when every line item
    has a subtotal (a missing tax counts as none)."""
    items = refund.line_items or []
    price = refund.refund_price
    if price is None or not items or any(item.get("subtotal") is None for item in items):
        return None
    total = sum((Decimal(item["subtotal"]) + Decimal(item.get("total_tax") or 0)
                 for item in items), Decimal(0))
    if price <= total:
        return None
    return {"price": str(price), "line_items_total": str(total), "line_items": len(items)}


def customer_velocity(refund: RefundFacts, params: CustomerVelocity,
                      created: Created) -> Details | None:
    """`params.refunds` or more refunds of the customer (this one among them) created within a
    span of `params.days` days that holds this refund's creation. `created` holds the
    customer's refunds in the shop, this one included."""
    at = refund.created_at
    if refund.customer_id is None or at is None:
        return None
    span = timedelta(days=params.days)
    ordered = sorted(created)
    times = [time for time, _ in ordered]
    counts = list(itertools.accumulate((count for _, count in ordered), initial=0))
    best = (0, at, at)
    for first, start in enumerate(times):  # the best span starts at some refund's creation
        if at - span <= start <= at:
            end = bisect.bisect_right(times, start + span)
            best = max(best, (counts[end] - counts[first], start, times[end - 1]))
    found, first_at, last_at = best
    if found < params.refunds:
        return None
    return {"customer_id": refund.customer_id, "refunds": found, "days": params.days,
            "first_created_at": first_at.isoformat(), "last_created_at": last_at.isoformat()}


def raised_after_refunded(refund: RefundFacts) -> Details | None:
    """The first fund change after `refunded` that raised the price."""
    if refund.refunded_at is None:
        return None
    for change in refund.fund_changes:
        amount, previous = change["amount"], change["previous_amount"]
        if (datetime.fromisoformat(change["at"]) > refund.refunded_at
                and amount is not None and previous is not None
                and Decimal(amount) > Decimal(previous)):
            return {"refunded_at": refund.refunded_at.isoformat(), "at": change["at"],
                    "amount": amount, "previous_amount": previous}
    return None


def stuck_in_progress(refund: RefundFacts, params: StuckInProgress,
                      now: datetime) -> Details | None:
    created = refund.created_at
    if refund.status != IN_PROGRESS or created is None or now - created <= timedelta(
            hours=params.hours):
        return None
    return {"created_at": created.isoformat(), "hours": params.hours,
            "checked_at": now.isoformat()}


def evaluate(refund: RefundFacts, rules: RiskRules, created: Created) -> dict[Rule, Details]:
    """The rules a change can trip that hold for this refund, with their figures."""
    found: dict[Rule, Details | None] = {}
    if rules.amount_over.enabled:
        found[Rule.AMOUNT_OVER] = amount_over(refund, rules.amount_over)
    if rules.over_line_items.enabled:
        found[Rule.OVER_LINE_ITEMS] = over_line_items(refund)
    if rules.customer_velocity.enabled:
        found[Rule.CUSTOMER_VELOCITY] = customer_velocity(refund, rules.customer_velocity,
                                                          created)
    if rules.raised_after_refunded.enabled:
        found[Rule.RAISED_AFTER_REFUNDED] = raised_after_refunded(refund)
    return {rule: details for rule, details in found.items() if details is not None}
