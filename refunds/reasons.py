"""The reasons report for operations: why and what was refunded, per currency, over the
refunds created in an interval (`refunds.report_params.interval`). Pure functions over refund
rows (`reason_totals`, `product_totals`); `reasons_report` fetches the rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy.orm import Session

from refunds.models import Refund
from refunds.report_params import Interval
from refunds.reports import RefundFacts, refunds_query
from refunds.sums import ZERO, nulls_first, stored_amount, total

UNSPECIFIED = "unspecified"  # the group of refunds without an after-sale reason


@dataclass(frozen=True)
class ReasonTotal:
    currency: str | None
    rights_reason_type: str
    rights_reason: str
    count: int
    amount: Decimal


@dataclass(frozen=True)
class ProductTotal:
    currency: str | None
    product_id: str | None
    variant_id: str | None
    sku: str | None
    refunds: int
    quantity: int
    subtotal: Decimal


ProductKey = tuple[str | None, str | None, str | None, str | None]  # currency, product


@dataclass(frozen=True)
class ReasonsReport:
    from_date: date
    to_date: date
    tz: str
    reasons: list[ReasonTotal]
    products: list[ProductTotal]


def reason_totals(refunds: Iterable[RefundFacts]) -> list[ReasonTotal]:
    """Count and sum of current price per currency and after-sale reason type and reason; a
    null type or reason is the group "unspecified". Most frequent first in each currency."""
    prices: dict[tuple[str | None, str, str], list[Decimal]] = defaultdict(list)
    for refund in refunds:
        key = (refund.currency, refund.rights_reason_type or UNSPECIFIED,
               refund.rights_reason or UNSPECIFIED)
        prices[key].append(refund.refund_price if refund.refund_price is not None else ZERO)
    found = [ReasonTotal(*key, len(group), total(group)) for key, group in prices.items()]
    return sorted(found, key=lambda row: (*nulls_first(row.currency), -row.count,
                                          row.rights_reason_type, row.rights_reason))


def product_totals(refunds: Iterable[RefundFacts]) -> list[ProductTotal]:
    """Per currency and line item product (product_id, variant_id, sku; null kept): the
    refunds that hold it (a refund counts once however many of its lines name it), the
    quantity refunded and the sum of line subtotals (absent ones as 0)."""
    refund_keys: dict[ProductKey, set[tuple[str, str]]] = defaultdict(set)
    quantities: dict[ProductKey, int] = defaultdict(int)
    subtotals: dict[ProductKey, list[Decimal]] = defaultdict(list)
    for refund in refunds:
        for line in refund.line_items or []:
            if not isinstance(line, dict):
                continue
            key = (refund.currency, line.get("product_id"), line.get("variant_id"),
                   line.get("sku"))
            refund_keys[key].add((refund.shop, refund.refund_id))
            quantities[key] += int(line.get("quantity") or 0)
            subtotals[key].append(stored_amount(line.get("subtotal")))
    found = [ProductTotal(*key, len(refund_keys[key]), quantities[key], total(subtotals[key]))
             for key in refund_keys]
    return sorted(found, key=lambda row: (
        *nulls_first(row.currency), -row.refunds,
        *(nulls_first(part) for part in (row.product_id, row.variant_id, row.sku))))


def reasons_report(period: Interval, *, session: Session, shop: str | None = None
                   ) -> ReasonsReport:
    """The reasons report over the refunds created in the interval (in a shop, when given).
    Runs in the caller's session and never writes; raises what the database raises."""
    created = list(session.scalars(refunds_query(shop, None).where(
        Refund.created_at >= period.start, Refund.created_at < period.end)))
    return ReasonsReport(from_date=period.from_date, to_date=period.to_date, tz=period.tz,
                         reasons=reason_totals(created), products=product_totals(created))
