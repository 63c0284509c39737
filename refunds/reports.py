"""The finance report, by calendar day in a zone: what was opened, refunded and changed each
day, and what was still open at the end (`refunds.reasons` holds the reasons report,
`refunds.report_params` the parameters both take).

The figures come from pure functions over refund rows (`itemize`, `summarize`,
`open_totals`); `finance_report` fetches the rows. The finance summary is built from the
itemized rows, the CSV's rows, so a day's totals are the sums of its rows by construction.
Money stays Decimal end to end and is added in a context that raises rather than rounds.

Rules a reader of the figures needs:
- a figure is at the refund's current price (`refund_price`); a null price counts as 0 in
  the sums, and the refund still counts;
- a fund change counts `amount - previous_amount`, a null one of the two as 0 (so the first
  fund change of a refund first seen without a price counts its whole amount);
- a null currency is a currency of its own (null), never dropped;
- a refund has one itemized row per day it was touched in the interval: opened, refunded
  or changed. One opened on a day and refunded on another has two rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from refunds.csv_safe import to_csv
from refunds.models import Refund
from refunds.report_params import Interval
from refunds.sums import EXACT, ZERO, nulls_first, stored_amount, total


class RefundFacts(Protocol):
    """What the reports read of a refund (a `Refund` row has it)."""

    shop: str
    refund_id: str
    order_id: str | None
    customer_id: str | None
    status: str
    refund_price: Decimal | None
    currency: str | None
    created_at: datetime | None
    refunded_at: datetime | None
    fund_changes: list[Any]
    line_items: list[Any] | None
    rights_reason_type: str | None
    rights_reason: str | None


@dataclass(frozen=True)
class ItemRow:
    """One refund on one day it was touched in the interval (the CSV's row). `refund_price`
    and the `line_items_*` totals describe the refund and repeat on each of its rows; the
    `opened_*`, `refunded_*` and `fund_change_net` figures are that day's."""

    date: date
    currency: str | None
    shop: str
    refund_id: str
    order_id: str | None
    customer_id: str | None
    status: str
    refund_price: Decimal | None
    opened: bool
    opened_amount: Decimal
    refunded: bool
    refunded_amount: Decimal
    fund_change_net: Decimal
    created_at: datetime | None
    refunded_at: datetime | None
    line_items_subtotal: Decimal
    line_items_tax: Decimal
    line_items_discounts: Decimal


COLUMNS = tuple(field.name for field in fields(ItemRow))


@dataclass(frozen=True)
class DayTotals:
    date: date
    currency: str | None
    opened_count: int
    opened_amount: Decimal
    refunded_count: int
    refunded_amount: Decimal
    fund_change_net: Decimal


@dataclass(frozen=True)
class OpenTotal:
    currency: str | None
    count: int
    amount: Decimal


@dataclass(frozen=True)
class FinanceReport:
    from_date: date
    to_date: date
    tz: str
    rows: list[ItemRow]
    days: list[DayTotals]
    open_at_end: list[OpenTotal]


def itemize(refunds: Iterable[RefundFacts], period: Interval) -> list[ItemRow]:
    """One row per refund and local day of the interval on which it was created, refunded
    (its first `refunded` message) or had a fund change; ordered by day, currency, shop and
    refund id. A refund not touched in the interval has no row."""
    rows = [row for refund in refunds for row in _rows_of(refund, period)]
    return sorted(rows, key=lambda row: (row.date, *nulls_first(row.currency), row.shop,
                                         row.refund_id))


def _rows_of(refund: RefundFacts, period: Interval) -> list[ItemRow]:
    price = refund.refund_price if refund.refund_price is not None else ZERO
    opened_on, refunded_on = period.day_of(refund.created_at), period.day_of(refund.refunded_at)
    changes: dict[date, list[Decimal]] = defaultdict(list)
    for change in refund.fund_changes:
        day = period.day_of(datetime.fromisoformat(change["at"]))
        if day is not None:
            changes[day].append(EXACT.subtract(stored_amount(change.get("amount")),
                                               stored_amount(change.get("previous_amount"))))
    subtotal, tax, discounts = _line_item_totals(refund.line_items or [])
    days = sorted({day for day in (opened_on, refunded_on, *changes) if day is not None})
    return [
        ItemRow(
            date=day, currency=refund.currency, shop=refund.shop, refund_id=refund.refund_id,
            order_id=refund.order_id, customer_id=refund.customer_id, status=refund.status,
            refund_price=refund.refund_price,
            opened=day == opened_on, opened_amount=price if day == opened_on else ZERO,
            refunded=day == refunded_on, refunded_amount=price if day == refunded_on else ZERO,
            fund_change_net=total(changes.get(day, ())),
            created_at=refund.created_at, refunded_at=refund.refunded_at,
            line_items_subtotal=subtotal, line_items_tax=tax, line_items_discounts=discounts,
        )
        for day in days
    ]


def _line_item_totals(items: list[Any]) -> tuple[Decimal, Decimal, Decimal]:
    """Sums of the line items' `subtotal`, `total_tax` and `discount_allocations[].amount`;
    an absent value is 0 (items stored before discounts were kept have none). `tax_lines`
    break `total_tax` down, so they are not added again."""
    lines = [item for item in items if isinstance(item, dict)]
    allocations = [allocation for line in lines
                   for allocation in line.get("discount_allocations") or []
                   if isinstance(allocation, dict)]
    return (total(stored_amount(line.get("subtotal")) for line in lines),
            total(stored_amount(line.get("total_tax")) for line in lines),
            total(stored_amount(allocation.get("amount")) for allocation in allocations))


def summarize(rows: Iterable[ItemRow]) -> list[DayTotals]:
    """One DayTotals per (day, currency) having a row, each figure the sum over its rows."""
    groups: dict[tuple[date, str | None], list[ItemRow]] = defaultdict(list)
    for row in rows:
        groups[row.date, row.currency].append(row)
    return [
        DayTotals(
            date=day, currency=currency,
            opened_count=sum(row.opened for row in group),
            opened_amount=total(row.opened_amount for row in group),
            refunded_count=sum(row.refunded for row in group),
            refunded_amount=total(row.refunded_amount for row in group),
            fund_change_net=total(row.fund_change_net for row in group),
        )
        for (day, currency), group in sorted(
            groups.items(), key=lambda item: (item[0][0], *nulls_first(item[0][1])))
    ]


def open_totals(open_refunds: Iterable[tuple[str | None, Decimal | None]]) -> list[OpenTotal]:
    """Count and sum of current price per currency of (currency, price) pairs."""
    prices: dict[str | None, list[Decimal]] = defaultdict(list)
    for currency, price in open_refunds:
        prices[currency].append(price if price is not None else ZERO)
    return [OpenTotal(currency, len(prices[currency]), total(prices[currency]))
            for currency in sorted(prices, key=nulls_first)]


def csv_text(rows: Sequence[ItemRow]) -> str:
    """The itemized rows as CSV (`COLUMNS` as header; `refunds.csv_safe` escaping)."""
    return to_csv(COLUMNS, ([getattr(row, name) for name in COLUMNS] for row in rows))


def finance_report(
    period: Interval, *, session: Session, shop: str | None = None, currency: str | None = None
) -> FinanceReport:
    """The finance report of the interval, limited to a shop and a currency when given.

    Reads the refunds touched in the interval: created before its end and updated (or
    created) after its start. That holds every refund whose creation, first `refunded`
    message or fund change lies inside: those are message times, at most updated_at (the
    latest) and at least created_at (the earliest createTime or message time), unless a
    message's updateTime is earlier than the refund's createTime; such a change is left out
    of a report that ends before the creation. `open_at_end` counts the refunds created
    before the end and not refunded before it. Runs in the caller's session and never
    writes; raises what the database raises."""
    touched = refunds_query(shop, currency).where(
        Refund.created_at < period.end,
        or_(Refund.updated_at >= period.start, Refund.created_at >= period.start))
    rows = itemize(session.scalars(touched), period)
    still_open = refunds_query(shop, currency).with_only_columns(
        Refund.currency, Refund.refund_price).where(
        Refund.created_at < period.end,
        or_(Refund.refunded_at.is_(None), Refund.refunded_at >= period.end))
    return FinanceReport(
        from_date=period.from_date, to_date=period.to_date, tz=period.tz, rows=rows,
        days=summarize(rows),
        open_at_end=open_totals((row.currency, row.refund_price)
                                for row in session.execute(still_open)),
    )


def refunds_query(shop: str | None, currency: str | None) -> Select[Refund]:
    """Refunds that have had a message (a row is made before its first one is folded)."""
    query = select(Refund).where(Refund.events_applied > 0)
    if shop is not None:
        query = query.where(Refund.shop == shop)
    if currency is not None:
        query = query.where(Refund.currency == currency)
    return query
