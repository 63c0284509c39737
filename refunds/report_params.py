"""The parameters reports take, checked once for the API, the console and the CLI: the
interval of calendar days in a zone, the currency and the format. Each bad value is a
BadParameter naming the parameter."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from refunds.queries import BadParameter

MAX_DAYS = 366
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ZONE = re.compile(r"[A-Za-z0-9_+\-/]{1,64}")
_CURRENCY = re.compile(r"[A-Za-z0-9]{1,16}")


class ReportFormat(enum.StrEnum):
    JSON = "json"
    CSV = "csv"


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
