"""Reports over refunds, by calendar day in a zone: the finance report (what was opened,
refunded and changed each day, and what was still open at the end) and the reasons report
(why and what was refunded).

The figures come from pure functions over refund rows (`itemize`, `summarize`,
`open_totals`, `reason_totals`, `product_totals`); `finance_report` and `reasons_report` fetch
the rows. The finance summary is built from the itemized rows, the CSV's rows, so a day's
totals are the sums of its rows by construction. Money stays Decimal end to end and is
added in a context that raises rather than rounds.

Rules a reader of the figures needs:
- a figure is at the refund's current price (`refund_price`); a null price counts as 0 in
  the sums, and the refund still counts;
- a fund change counts `amount - previous_amount`, a null one of the two as 0 (so the first
  fund change of a refund first seen without a price counts its whole amount);
- a null currency is a currency of its own (null), never dropped;
- a refund has one itemized row per day it was touched in the interval: opened, refunded
  or changed. One opened on a day and refunded on another has two rows."""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time
from decimal import Context, Decimal, Inexact
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from refunds.csv_safe import to_csv
from refunds.models import Refund
from refunds.queries import BadParameter

MAX_DAYS = 366
UNSPECIFIED = "unspecified"  # the group of refunds without an after-sale reason
ZERO = Decimal(0)
# Room for 10^20 sums of the largest amount Genstore may send (18 digits, 8 places); a sum
# that would still need rounding raises instead.
EXACT = Context(prec=60, traps=[Inexact])
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZONE = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")
_CURRENCY = re.compile(r"[A-Za-z0-9]{1,16}")


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


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
class Interval:
    """The calendar days [from_date, to_date) in a zone, and the UTC instants they span."""

    from_date: date
    to_date: date
    zone: ZoneInfo
    start: datetime
    end: datetime

    @property
    def tz(self) -> str:
        return self.zone.key

    def day_of(self, instant: datetime | None) -> date | None:
        """The local date of an instant in the interval; None outside it (or for None)."""
        if instant is None or not self.start <= instant < self.end:
            return None
        return instant.astimezone(self.zone).date()


def interval(from_text: str | None, to_text: str | None, tz: str | None = None) -> Interval:
    """The report interval from `from`, `to` (dates `YYYY-MM-DD`) and `tz` (an IANA zone,
    default UTC). BadParameter naming the parameter for a missing or bad date (or one at the
    edge of what a datetime holds), an unknown zone, `from` not before `to`, or more than 366
    days."""
    first, last = _date("from", from_text), _date("to", to_text)
    zone = _zone("UTC" if tz is None else tz)
    if first >= last:
        raise BadParameter("from must be before to: the report covers the days [from, to)")
    if (last - first).days > MAX_DAYS:
        raise BadParameter(f"from and to may be at most {MAX_DAYS} days apart")
    try:
        return Interval(first, last, zone, _midnight(first, zone), _midnight(last, zone))
    except OverflowError:  # midnight of 0001-01-01 east of UTC is before datetime.min
        raise BadParameter("from must be a date after 0001-01-01") from None


def currency_filter(text: str | None) -> str | None:
    """The `currency` parameter as stored refunds carry it (compared exactly, `USD` is not
    `usd`), or None for every currency. BadParameter unless 1-16 letters or digits."""
    if text is None:
        return None
    if not _CURRENCY.fullmatch(text):
        raise BadParameter("currency must be a currency code such as USD (1-16 letters or digits)")
    return text


def report_format(text: str | None) -> ReportFormat:
    """The `format` parameter, JSON when absent. BadParameter for another value."""
    try:
        return ReportFormat(text or ReportFormat.JSON)
    except ValueError:
        raise BadParameter("format must be json or csv") from None


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
    return sorted(rows, key=lambda row: (row.date, *_nulls_first(row.currency), row.shop,
                                         row.refund_id))


def _rows_of(refund: RefundFacts, period: Interval) -> list[ItemRow]:
    price = refund.refund_price if refund.refund_price is not None else ZERO
    opened_on, refunded_on = period.day_of(refund.created_at), period.day_of(refund.refunded_at)
    changes: dict[date, list[Decimal]] = defaultdict(list)
    for change in refund.fund_changes:
        day = period.day_of(datetime.fromisoformat(change["at"]))
        if day is not None:
            changes[day].append(EXACT.subtract(_money(change.get("amount")),
                                               _money(change.get("previous_amount"))))
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
    return (total(_money(line.get("subtotal")) for line in lines),
            total(_money(line.get("total_tax")) for line in lines),
            total(_money(allocation.get("amount")) for allocation in allocations))


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
            groups.items(), key=lambda item: (item[0][0], *_nulls_first(item[0][1])))
    ]


def open_totals(open_refunds: Iterable[tuple[str | None, Decimal | None]]) -> list[OpenTotal]:
    """Count and sum of current price per currency of (currency, price) pairs."""
    prices: dict[str | None, list[Decimal]] = defaultdict(list)
    for currency, price in open_refunds:
        prices[currency].append(price if price is not None else ZERO)
    return [OpenTotal(currency, len(prices[currency]), total(prices[currency]))
            for currency in sorted(prices, key=_nulls_first)]


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
    touched = _refunds(shop, currency).where(
        Refund.created_at < period.end,
        or_(Refund.updated_at >= period.start, Refund.created_at >= period.start))
    rows = itemize(session.scalars(touched), period)
    still_open = _refunds(shop, currency).with_only_columns(
        Refund.currency, Refund.refund_price).where(
        Refund.created_at < period.end,
        or_(Refund.refunded_at.is_(None), Refund.refunded_at >= period.end))
    return FinanceReport(
        from_date=period.from_date, to_date=period.to_date, tz=period.tz, rows=rows,
        days=summarize(rows),
        open_at_end=open_totals((row.currency, row.refund_price)
                                for row in session.execute(still_open)),
    )


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
    return sorted(found, key=lambda row: (*_nulls_first(row.currency), -row.count,
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
            subtotals[key].append(_money(line.get("subtotal")))
    found = [ProductTotal(*key, len(refund_keys[key]), quantities[key], total(subtotals[key]))
             for key in refund_keys]
    return sorted(found, key=lambda row: (
        *_nulls_first(row.currency), -row.refunds,
        *(_nulls_first(part) for part in (row.product_id, row.variant_id, row.sku))))


def reasons_report(period: Interval, *, session: Session, shop: str | None = None
                   ) -> ReasonsReport:
    """The reasons report over the refunds created in the interval (in a shop, when given).
    Runs in the caller's session and never writes; raises what the database raises."""
    created = list(session.scalars(_refunds(shop, None).where(
        Refund.created_at >= period.start, Refund.created_at < period.end)))
    return ReasonsReport(from_date=period.from_date, to_date=period.to_date, tz=period.tz,
                         reasons=reason_totals(created), products=product_totals(created))


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum (0 for none); Inexact rather than a rounded figure."""
    result = ZERO
    for amount in amounts:
        result = EXACT.add(result, amount)
    return result


def _refunds(shop: str | None, currency: str | None) -> Select[Refund]:
    """Refunds that have had a message (a row is made before its first one is folded)."""
    query = select(Refund).where(Refund.events_applied > 0)
    if shop is not None:
        query = query.where(Refund.shop == shop)
    if currency is not None:
        query = query.where(Refund.currency == currency)
    return query


def _money(value: object) -> Decimal:
    """A stored amount (a decimal string), 0 when absent."""
    return ZERO if value is None or value == "" else Decimal(str(value))


def _nulls_first(value: str | None) -> tuple[bool, str]:
    """A sort key for text that may be null: null first, then by text."""
    return (value is not None, value or "")


def _date(name: str, text: str | None) -> date:
    if text is None:
        raise BadParameter(f"{name} is required, a date such as 2025-03-01")
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise BadParameter(f"{name} must be a date YYYY-MM-DD, got {text!r:.40}") from None


def _zone(name: str) -> ZoneInfo:
    try:
        if not _ZONE.fullmatch(name):
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadParameter(
            f"tz must be an IANA time zone such as Asia/Shanghai, got {name!r:.60}") from None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of a local day (where a zone skips midnight, its first hour)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
