"""Exact sums of money for reports: Decimal end to end, added in a context that raises
rather than rounds."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal, Inexact

ZERO = Decimal(0)
# Room for 10^20 sums of the largest amount Genstore may send (18 digits, 8 places); a sum
# that would still need rounding raises instead.
EXACT = Context(prec=60, traps=[Inexact])


def total(amounts: Iterable[Decimal]) -> Decimal:
    """The exact sum (0 for none); Inexact rather than a rounded figure."""
    result = ZERO
    for amount in amounts:
        result = EXACT.add(result, amount)
    return result


def stored_amount(value: object) -> Decimal:
    """A stored amount (a decimal string), 0 when absent."""
    return ZERO if value is None or value == "" else Decimal(str(value))


def nulls_first(value: str | None) -> tuple[bool, str]:
    """A sort key for text that may be null: null first, then by text."""
    return (value is not None, value or "")
