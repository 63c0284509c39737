"""CSV that spreadsheets open safely: RFC 4180 (fields quoted where needed, CRLF line ends)
and no formulas from outside.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (some also a tab or a
carriage return) as a formula. Text that came from outside (ids, shop domains, currency codes,
statuses as stored) and starts so is written with a leading `'`, which spreadsheets show as
text. Values a report formats itself (Decimal amounts, counts, dates, times, 1/0 flags) are
not text and are written as they are: a negative amount stays `-5.00`, a number a spreadsheet
can sum. The type of a value decides, so a caller escapes by passing text as `str`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | Decimal | int | bool | date | datetime | None


def cell(value: Cell) -> str:
    """One value as CSV text: None empty, a flag 1/0, times ISO-8601, amounts in positional
    notation, text escaped."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return "'" + value if value.startswith(FORMULA_STARTS) else value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")  # str() would write a zero with 8 places as 0E-8
    return str(value)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> str:
    """The header line and the rows, each line ended by CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(value) for value in row] for row in rows)
    return out.getvalue()
