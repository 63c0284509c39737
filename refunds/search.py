"""Refund search: the filters of `GET /refunds` (and the console's search), checked once, as
SQL conditions each served by an index on PostgreSQL (migration 0005; plans at a million
refunds in docs/performance.md), and keyset pages in (shop, refund id) order."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Select,
    String,
    case,
    cast,
    exists,
    func,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.orm import Session

from refunds.models import MessageRecord, Refund, RefundFlag
from refunds.queries import (
    DEFAULT_PAGE,
    STATUSES,
    BadParameter,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from refunds.state import FUND_CHANGE


@dataclass(frozen=True)
class Page:
    refunds: Sequence[Refund]
    next_cursor: str | None


@dataclass(frozen=True)
class RefundFilters:
    """What a listing of refunds can be narrowed by (`GET /refunds`'s filters): every field
    optional, all of them combined. Amounts are decimals within a refund price's format, times
    are aware, `created_from`/`refunded_from` are inclusive and `created_to`/`refunded_to`
    exclusive, `updated_since` inclusive; `flagged` True keeps the refunds with an open
    (unacknowledged) flag, False those without one; `fund_changed` True those with a fund
    change, False those without. Building one with a value no refund could be searched by raises
    BadParameter naming the field; `from_text` reads them from a query string."""

    order_id: str | None = None
    customer_id: str | None = None
    status: str | None = None
    currency: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_since: datetime | None = None
    refunded_from: datetime | None = None
    refunded_to: datetime | None = None
    flagged: bool | None = None
    fund_changed: bool | None = None

    def __post_init__(self) -> None:
        for name in TEXT_FILTERS:
            value = getattr(self, name)
            if value is not None and "\x00" in value:  # never stored; PostgreSQL refuses it
                raise BadParameter(f"{name} must not contain NUL characters")
        if self.status is not None and self.status not in STATUSES:
            raise BadParameter(f"status must be one of {', '.join(STATUSES)}")
        for name in AMOUNT_FILTERS:
            amount = getattr(self, name)
            if amount is not None and not _is_amount(amount):
                raise BadParameter(_AMOUNT_FORMAT.format(name=name))
        for name in TIME_FILTERS:
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise BadParameter(f"{name} must carry its UTC offset")
        low, high = self.min_amount, self.max_amount
        if low is not None and high is not None and low > high:
            raise BadParameter("min_amount must not be above max_amount")
        for first, last in (("created_from", "created_to"), ("refunded_from", "refunded_to")):
            start, end = getattr(self, first), getattr(self, last)
            if start is not None and end is not None and start > end:
                raise BadParameter(f"{first} must not be after {last}")

    @classmethod
    def from_text(cls, values: Mapping[str, str]) -> RefundFilters:
        """The filters named in `values` (a query string, or the command line's options):
        text fields as given (surrounding blanks dropped); amounts as plain decimals
        (`25.00`); times ISO-8601, read as UTC without an offset (a date alone is its
        midnight); `flagged` `true` or `false`. An empty value is no filter; other names are
        ignored. Raises BadParameter naming the first bad value."""
        given = {name: values[name].strip() for name in FILTERS
                 if name in values and values[name].strip()}
        parsed: dict[str, Any] = {}
        for name, text in given.items():
            if name in AMOUNT_FILTERS:
                parsed[name] = parse_amount(name, text)
            elif name in TIME_FILTERS:
                parsed[name] = parse_time(name, text)
            elif name in FLAG_FILTERS:
                parsed[name] = parse_flag(name, text)
            else:
                parsed[name] = text
        return cls(**parsed)

    def conditions(self, dialect: str) -> list[ColumnElement[bool]]:
        """The WHERE terms, one per filter given; each is served by an index on PostgreSQL
        (migration 0005)."""
        terms: list[ColumnElement[bool]] = [
            getattr(Refund, name) == getattr(self, name)
            for name in ("order_id", "customer_id", "status", "currency")
            if getattr(self, name) is not None]
        if self.min_amount is not None:
            terms.append(_amount_compared(self.min_amount, at_least=True, dialect=dialect))
        if self.max_amount is not None:
            terms.append(_amount_compared(self.max_amount, at_least=False, dialect=dialect))
        if self.created_from is not None:
            terms.append(Refund.created_at >= self.created_from)
        if self.created_to is not None:
            terms.append(Refund.created_at < self.created_to)
        if self.updated_since is not None:
            terms.append(Refund.updated_at >= self.updated_since)
        if self.refunded_from is not None:
            terms.append(Refund.refunded_at >= self.refunded_from)
        if self.refunded_to is not None:
            terms.append(Refund.refunded_at < self.refunded_to)
        if self.flagged is not None:
            open_flag = exists().where(RefundFlag.shop == Refund.shop,
                                       RefundFlag.refund_id == Refund.refund_id,
                                       RefundFlag.acknowledged_at.is_(None))
            terms.append(open_flag if self.flagged else ~open_flag)
        if self.fund_changed is not None:
            # a recorded fund_change message: the fold makes one fund_changes entry of each
            changed = exists().where(MessageRecord.shop == Refund.shop,
                                     MessageRecord.refund_id == Refund.refund_id,
                                     MessageRecord.kind == FUND_CHANGE)
            terms.append(changed if self.fund_changed else ~changed)
        return terms


FILTERS = tuple(field.name for field in fields(RefundFilters))
TEXT_FILTERS = ("order_id", "customer_id", "status", "currency")
AMOUNT_FILTERS = ("min_amount", "max_amount")
TIME_FILTERS = ("created_from", "created_to", "updated_since", "refunded_from", "refunded_to")
FLAG_FILTERS = ("flagged", "fund_changed")
# A refund price's format (schemas.types' money): at most 18 digits before the point, 8 after.
AMOUNT_DIGITS, AMOUNT_PLACES = 18, 8
_AMOUNT = re.compile(rf"[0-9]{{1,{AMOUNT_DIGITS}}}(?:\.[0-9]{{1,{AMOUNT_PLACES}}})?")
_AMOUNT_FORMAT = (f"{{name}} must be a decimal amount of at most {AMOUNT_DIGITS} digits before "
                  f"the point and {AMOUNT_PLACES} after, such as 25.00")


def parse_amount(name: str, text: str) -> Decimal:
    """A non-negative plain decimal (no exponent, sign, NaN or Infinity); BadParameter else."""
    if not _AMOUNT.fullmatch(text):
        raise BadParameter(_AMOUNT_FORMAT.format(name=name))
    return Decimal(text)


def parse_time(name: str, text: str) -> datetime:
    """ISO-8601 in UTC; a time without an offset is read as UTC, a date alone as its
    midnight. BadParameter for anything else, or a time that leaves the years 1-9999 in UTC."""
    try:
        parsed = datetime.fromisoformat(text)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadParameter(
            f"{name} must be an ISO-8601 time, such as 2025-03-01T10:00:00+00:00 or 2025-03-01"
        ) from None


def parse_flag(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise BadParameter(f"{name} must be true or false")
    return text == "true"


def _is_amount(amount: Decimal) -> bool:
    if not amount.is_finite() or amount < 0:
        return False
    exponent = amount.as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -AMOUNT_PLACES and (
        amount == 0 or amount.adjusted() < AMOUNT_DIGITS)


def _amount_compared(bound: Decimal, *, at_least: bool, dialect: str) -> ColumnElement[bool]:
    """`refund_price >= bound` (or `<=`), compared as decimals. PostgreSQL's NUMERIC does
    that itself; SQLite keeps money as text ("10.00" sorts before "9.50"), so there the price
    is compared as (whole units, 10^-8 units): exact for every price within the format."""
    if dialect != "sqlite":
        return Refund.refund_price >= bound if at_least else Refund.refund_price <= bound
    whole = int(bound)
    key = tuple_(*_sqlite_price_parts())
    bound_key = (whole, int((bound - whole).scaleb(AMOUNT_PLACES)))
    return key >= bound_key if at_least else key <= bound_key


def _sqlite_price_parts() -> tuple[ColumnElement[int], ColumnElement[int]]:
    """The stored price text (Decimal's str: "25.00", or "1.5E-7" below 10^-6) as whole units
    and the fraction in 10^-8 units. An exponent form is a tiny price, which a double and
    printf's rounding to 8 places read exactly."""
    stored = type_coerce(Refund.refund_price, String)
    plain = case((func.instr(stored, "E") > 0, func.printf("%.8f", cast(stored, Float))),
                 else_=stored)
    point = func.instr(plain, ".")
    fraction = func.substr(func.substr(plain, point + 1).concat("0" * AMOUNT_PLACES), 1,
                           AMOUNT_PLACES)
    return (cast(plain, Integer),  # SQLite reads the digits before the point
            case((point > 0, cast(fraction, Integer)), else_=0))


def refunds_page(
    *,
    session: Session,
    shop: str | None = None,
    filters: RefundFilters | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> Page:
    """The refunds that pass every filter, a page at a time in (shop, refund id) order: keyset
    pagination, stable while new refunds arrive (a page never repeats or skips a refund that
    existed when the first was read). `shop` limits the listing to one shop. Raises
    BadParameter for a limit outside 1-500 or a cursor this API did not return (filters are
    checked when they are built). Reads only; runs in the caller's session."""
    query = refunds_query(dialect=session.get_bind().dialect.name, shop=shop,
                          filters=filters or RefundFilters(), limit=limit, cursor=cursor)
    rows = session.scalars(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].shop, rows[-1].refund_id) if more else None
    return Page(rows, next_cursor)


def refunds_query(
    *, dialect: str, shop: str | None, filters: RefundFilters, limit: int, cursor: str | None
) -> Select[Refund]:
    """The statement behind refunds_page: one row past the page, which tells whether another
    follows. Public so the search benchmark explains the very statement the API runs."""
    check_limit(limit)
    query = select(Refund).where(Refund.events_applied > 0, *filters.conditions(dialect))
    if shop is not None:
        query = query.where(Refund.shop == shop)
    if cursor:
        query = query.where(tuple_(Refund.shop, Refund.refund_id) > decode_cursor(cursor))
    return query.order_by(Refund.shop, Refund.refund_id).limit(limit + 1)


