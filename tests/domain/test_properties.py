"""Property: for random message sets, the final state depends neither on arrival order nor on
duplicates, and equals the oracle's reading of the SPEC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from deliveries import apply, clear, delivery, view
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oracle import actual_state, expected_state
from payloads import camel_event

from refunds.settings import Settings

START = datetime(2025, 3, 1, tzinfo=UTC)
KINDS = st.sampled_from(["in_progress", "refunded", "fund_change"])
# NUL cannot be stored in PostgreSQL text; the parser dead-letters it (tested there). Lone
# surrogates cannot be sent at all: a body is UTF-8 bytes.
NOTES = st.none() | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                            max_size=12)
PRICES = st.decimals(min_value=0, max_value=Decimal("99999.99"), places=2)


@st.composite
def message_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-6 messages for one refund, each at its own minute."""
    minutes = draw(st.lists(st.integers(0, 600), min_size=1, max_size=6, unique=True))
    return [
        camel_event(
            refund_id="42",
            status=draw(KINDS),
            price=str(draw(PRICES)),
            note=draw(NOTES),
            update_time=(START + timedelta(minutes=minute)).isoformat(),
        )
        for minute in minutes
    ]


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[int, bool]]]:
    """A message set and an arrival schedule: a shuffled list of (message index, resend of
    the same delivery?) with every message at least once."""
    messages = draw(message_sets())
    extra = draw(st.lists(st.integers(0, len(messages) - 1), max_size=6))
    indices = draw(st.permutations(list(range(len(messages))) + extra))
    resend = draw(st.lists(st.booleans(), min_size=len(indices), max_size=len(indices)))
    return messages, list(zip(indices, resend, strict=True))


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=arrivals())
def test_any_order_any_duplicates_same_state_as_oracle(settings: Settings, case: Any) -> None:
    messages, schedule = case
    clear(settings)
    sent: dict[int, Any] = {}
    for index, resend in schedule:
        raw = sent[index] if resend and index in sent else delivery(messages[index])
        sent[index] = raw
        apply(settings, raw)
    assert actual_state(view(settings, "42")) == expected_state(messages)


@st.composite
def loose_message_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Messages that may share a time and may lack a price or a note: the tie-break and
    "latest message that carries the field" rules."""
    return [
        camel_event(
            refund_id="43",
            status=draw(KINDS),
            price=draw(st.none() | PRICES.map(str)),
            note=draw(NOTES),
            update_time=(START + timedelta(minutes=draw(st.integers(0, 3)))).isoformat(),
        )
        for _ in range(draw(st.integers(1, 6)))
    ]


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=loose_message_sets(), data=st.data())
def test_ties_and_missing_fields_do_not_depend_on_order(
    settings: Settings, messages: list[dict[str, Any]], data: st.DataObject
) -> None:
    states = []
    for _ in range(2):
        clear(settings)
        for payload in data.draw(st.permutations(messages)):
            apply(settings, delivery(payload))
        states.append(view(settings, "43"))
    assert states[0] == states[1]
