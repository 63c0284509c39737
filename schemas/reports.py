"""Shapes of the reports the desk returns (`GET /reports/refunds`, `GET /reports/reasons`).
Built from `refunds.reports`' results by attribute; dumped with
`model_dump(mode="json", by_alias=True)` (the interval's first day leaves as `"from"`, a
Python keyword). Amounts leave as exact decimal strings in positional notation (`"0.00000000"`,
never `"0E-8"`), dates as `YYYY-MM-DD`."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.types import Amount


class ReasonsQuery(BaseModel):
    """What `GET /reports/reasons` reads of its query (`refunds.reports.interval` checks it;
    a bad value is a 400 naming it)."""

    from_: dt.date = Field(alias="from", description="the first day, YYYY-MM-DD")
    to: dt.date = Field(description="the day after the last; at most 366 days after from")
    tz: str = Field("UTC", description="the IANA zone whose calendar days count")
    shop: str | None = Field(None, description="the shop domain; a token for one shop sees "
                                               "only its own")


class FinanceQuery(ReasonsQuery):
    """What `GET /reports/refunds` reads of its query."""

    currency: str | None = Field(None, pattern="^[A-Za-z0-9]{1,16}$",
                                 description="only refunds in this currency (exact)")
    format: Literal["json", "csv"] = Field(
        "json", description="csv: one row per refund and day it was touched, as an attachment")


class _FromAttributes(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _Interval(_FromAttributes):
    from_: dt.date = Field(validation_alias="from_date", serialization_alias="from")
    to: dt.date = Field(validation_alias="to_date")
    tz: str


class FinanceDay(_FromAttributes):
    """One date and currency: refunds created that day and refunded that day (at their
    current price) and the net of that day's fund changes."""

    date: dt.date
    currency: str | None
    opened_count: int
    opened_amount: Amount
    refunded_count: int
    refunded_amount: Amount
    fund_change_net: Amount


class OpenAtEnd(_FromAttributes):
    """Refunds created before the interval's end and not refunded before it."""

    currency: str | None
    count: int
    amount: Amount


class FinanceReportView(_Interval):
    days: list[FinanceDay]
    open_at_end: list[OpenAtEnd]


class ReasonTotalView(_FromAttributes):
    currency: str | None
    rights_reason_type: str
    rights_reason: str
    count: int
    amount: Amount


class ProductTotalView(_FromAttributes):
    currency: str | None
    product_id: str | None
    variant_id: str | None
    sku: str | None
    refunds: int
    quantity: int
    subtotal: Amount


class ReasonsReportView(_Interval):
    reasons: list[ReasonTotalView]
    products: list[ProductTotalView]
