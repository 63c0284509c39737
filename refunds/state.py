"""The refund state machine as a pure fold over a refund's distinct messages.

Folding the whole (small) message set on every apply, instead of patching the current row,
is what makes the final state independent of arrival order: the same set of messages always
gives the same state, whatever order they came in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from schemas.types import decimal_text

IN_PROGRESS = "in_progress"
REFUNDED = "refunded"
FUND_CHANGE = "fund_change"

# At equal times the later stage wins, then the fingerprint breaks the tie.
KIND_RANK = {IN_PROGRESS: 0, FUND_CHANGE: 1, REFUNDED: 2}
FIELDS = ("order_id", "currency", "customer_id", "note", "line_items", "rights_reason_type",
          "rights_reason")  # fmt: skip


class MessageFacts(Protocol):
    kind: str
    occurred_at: datetime
    fingerprint: str
    created_at: datetime | None
    price: Decimal | None
    order_id: str | None
    currency: str | None
    customer_id: str | None
    note: str | None
    line_items: list[Any] | None

    @property
    def rights_reason_type(self) -> str | None: ...

    @property
    def rights_reason(self) -> str | None: ...


@dataclass(frozen=True)
class FundChange:
    amount: Decimal | None
    previous_amount: Decimal | None
    at: datetime

    def as_json(self) -> dict[str, str | None]:
        return {
            "amount": _text(self.amount),
            "previous_amount": _text(self.previous_amount),
            "at": self.at.isoformat(),
        }


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else decimal_text(amount)


@dataclass(frozen=True)
class RefundState:
    # The fields stored as they are; fund_changes is stored as JSON.
    COLUMNS: ClassVar[tuple[str, ...]] = (
        "status", "refund_price", *FIELDS, "created_at", "updated_at", "refunded_at",
        "events_applied",
    )  # fmt: skip

    status: str
    refund_price: Decimal | None
    order_id: str | None
    currency: str | None
    customer_id: str | None
    note: str | None
    line_items: list[Any] | None
    rights_reason_type: str | None
    rights_reason: str | None
    fund_changes: tuple[FundChange, ...]
    created_at: datetime
    updated_at: datetime
    refunded_at: datetime | None
    events_applied: int


def order_key(message: MessageFacts) -> tuple[datetime, int, str]:
    return (message.occurred_at, KIND_RANK[message.kind], message.fingerprint)


def fold(messages: Iterable[MessageFacts]) -> RefundState:
    """Status only moves forward; each field comes from the latest message that carries it."""
    ordered = sorted(messages, key=order_key)
    if not ordered:
        raise ValueError("a refund needs at least one message")
    latest = {name: _latest(ordered, name) for name in FIELDS}
    refunded = [m.occurred_at for m in ordered if m.kind == REFUNDED]
    return RefundState(
        status=REFUNDED if refunded else IN_PROGRESS,
        refund_price=_latest(ordered, "price"),
        fund_changes=_fund_changes(ordered),
        created_at=min(m.created_at or m.occurred_at for m in ordered),
        updated_at=ordered[-1].occurred_at,
        refunded_at=refunded[0] if refunded else None,
        events_applied=len(ordered),
        **latest,
    )


def _latest(ordered: list[MessageFacts], name: str) -> Any:
    for message in reversed(ordered):
        value = getattr(message, name)
        if value is not None:
            return value
    return None


def _fund_changes(ordered: list[MessageFacts]) -> tuple[FundChange, ...]:
    """previous_amount is the price of the latest earlier message that carried one."""
    changes = []
    last_price: Decimal | None = None
    for message in ordered:
        if message.kind == FUND_CHANGE:
            changes.append(FundChange(message.price, last_price, message.occurred_at))
        if message.price is not None:
            last_price = message.price
    return tuple(changes)
