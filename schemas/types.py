"""Reusable annotated types for Genstore's wire values: strict where money is concerned,
lenient where Genstore is loose (string flags and lists, two time formats, "" for absent).

Validators never echo the input in their messages: inputs may hold customer details.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, ValidationInfo
from pydantic_core import from_json

_MONEY = re.compile(r"[0-9]{1,18}(?:\.[0-9]{1,8})?")
_QUANTITY = re.compile(r"[0-9]{1,9}")
_FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _money(value: object) -> Decimal | None:
    """Exact, non-negative decimals only: a JSON float has already lost exactness."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("money must be a decimal string or an integer, not a JSON float")
    text = value.strip() if isinstance(value, str) else str(value)
    if not _MONEY.fullmatch(text):
        raise ValueError("money must be a non-negative decimal, at most 18 digits and 8 places")
    return Decimal(text)


def _quantity(value: object) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("quantity must be a whole number")
    text = value.strip() if isinstance(value, str) else str(value)
    if not _QUANTITY.fullmatch(text):
        raise ValueError("quantity must be a non-negative whole number below 10^9")
    return int(text)


def _code(limit: int) -> Callable[[object], str | None]:
    """Ids and codes: digits in practice, so JSON integers are read as their text."""

    def validate(value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("expected a string or an integer")
        text = value.strip() if isinstance(value, str) else str(value)
        if len(text) > limit:
            raise ValueError(f"longer than {limit} characters")
        return _without_nul(text) or None

    return validate


def _required_code(value: object) -> str:
    text = _code(64)(value)
    if text is None:
        raise ValueError("must not be empty")
    return text


def _text(value: object) -> str | None:
    """Free text survives unchanged (no stripping); "" is Genstore's way to say absent."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a string")
    return _without_nul(value) if isinstance(value, str) else str(value)


def _without_nul(text: str) -> str:
    """Text is stored unchanged, and no SQL text column can hold a NUL character."""
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


def _flag(value: object) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower() if isinstance(value, str | int) else None
    if key not in _FLAGS:
        raise ValueError("expected true/false, 1/0 or a boolean")
    return _FLAGS[key]


def _tags(value: object) -> tuple[str, ...]:
    """A list, a JSON string holding a list, or comma-separated text."""
    if isinstance(value, str):
        value = _tags_from_text(value.strip())
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValueError("expected a list of tags")
    return tuple(tag.strip() for tag in value if tag.strip())


def _tags_from_text(text: str) -> object:
    if not text.startswith("["):
        return text.split(",")
    try:
        return from_json(text)
    except ValueError:
        raise ValueError("tags look like a JSON list but are not valid JSON") from None


def parse_time(text: str, zone: tzinfo) -> datetime:
    """ISO-8601 with an offset, or Genstore's naive "2024-12-31 00:00:00" read in `zone`;
    always returned in UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("expected an ISO-8601 time or YYYY-MM-DD HH:MM:SS") from None


def _time(value: object, info: ValidationInfo) -> datetime | None:
    """The zone for naive times comes from the validation context ("naive_tz")."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("expected a time string")
    context = info.context if isinstance(info.context, dict) else {}
    return parse_time(value, context.get("naive_tz", UTC))


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime built in code is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def decimal_text(amount: Decimal) -> str:
    """Positional notation always: `str()` writes a zero with 8 places as "0E-8" and 1e-7 as
    "1E-7"; `10.00` stays `10.00`."""
    return format(amount, "f")


Money = Annotated[Decimal | None, BeforeValidator(_money)]
# A Decimal that leaves as its exact positional text in JSON (the API, stored messages).
Amount = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
Quantity = Annotated[int | None, BeforeValidator(_quantity)]
Code = Annotated[str | None, BeforeValidator(_code(64))]
Currency = Annotated[str | None, BeforeValidator(_code(16))]
RequiredCode = Annotated[str, BeforeValidator(_required_code)]
Text = Annotated[str | None, BeforeValidator(_text)]
Flag = Annotated[bool | None, BeforeValidator(_flag)]
Tags = Annotated[tuple[str, ...], BeforeValidator(_tags)]
WireTime = Annotated[datetime | None, BeforeValidator(_time)]
UtcTime = Annotated[datetime, AfterValidator(as_utc)]
