"""The pure fold: forward-only status, latest fields, fund-change history."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from refunds.state import fold

pytestmark = pytest.mark.unit


@dataclass
class Fact:
    kind: str
    minute: int
    price: Decimal | None = None
    note: str | None = None
    fingerprint: str = "f"
    created_at: datetime | None = None
    order_id: str | None = "9001"
    currency: str | None = None
    customer_id: str | None = None
    line_items: list[Any] | None = field(default=None)
    rights_reason_type: str | None = None
    rights_reason: str | None = None

    @property
    def occurred_at(self) -> datetime:
        return datetime(2025, 3, 1, 10, self.minute, tzinfo=UTC)


SPEC = [
    Fact("in_progress", 0, Decimal("25.00")),
    Fact("fund_change", 5, Decimal("20.00")),
    Fact("refunded", 9, Decimal("20.00")),
]


@pytest.mark.parametrize("order", list(itertools.permutations(SPEC)))
def test_spec_sequence_folds_to_the_same_state_in_any_order(order: tuple[Fact, ...]) -> None:
    state = fold(order)
    assert state.status == "refunded"
    assert state.refund_price == Decimal("20.00")
    assert [(c.amount, c.previous_amount) for c in state.fund_changes] == [
        (Decimal("20.00"), Decimal("25.00"))
    ]
    assert state.events_applied == 3
    assert state.updated_at == SPEC[2].occurred_at


def test_fields_come_from_the_latest_message_that_carries_them() -> None:
    state = fold([Fact("in_progress", 1, note="first"), Fact("fund_change", 2, note=None)])
    assert state.note == "first"


def test_equal_times_break_ties_by_stage_then_fingerprint() -> None:
    a = Fact("in_progress", 1, Decimal("1"), fingerprint="b")
    b = Fact("refunded", 1, Decimal("2"), fingerprint="a")
    assert fold([a, b]).refund_price == fold([b, a]).refund_price == Decimal("2")


def test_fold_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        fold([])


@pytest.mark.parametrize("order", list(itertools.permutations(
    [*SPEC, Fact("refunded", 12, Decimal("20.00"), note="again")])))
def test_refunded_at_is_the_first_refunded_message_whatever_the_order(
    order: tuple[Fact, ...]
) -> None:
    assert fold(order).refunded_at == SPEC[2].occurred_at


def test_a_refund_still_in_progress_has_no_refunded_at() -> None:
    assert fold(SPEC[:2]).refunded_at is None


def test_the_reason_comes_from_the_latest_message_that_gives_one() -> None:
    given = [Fact("in_progress", 0, rights_reason_type="quality", rights_reason="broken"),
             Fact("refunded", 9)]
    state = fold(given)
    assert (state.rights_reason_type, state.rights_reason) == ("quality", "broken")
