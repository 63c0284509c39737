"""The one apply path: a list of deliveries gives each delivery the outcome, and the database the
state, of applying the same deliveries one by one (lists of one) in the same order. Runs on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from conftest import make_settings
from deliveries import apply, clear, delivery, view
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from payloads import camel_event
from sqlalchemy import select

from refunds.apply import Outcome, Result, apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord, RawDeliveryRecord, Refund
from refunds.settings import Settings

START = datetime(2025, 3, 1, tzinfo=UTC)
KINDS = st.sampled_from(["in_progress", "refunded", "fund_change"])
PRICES = st.decimals(min_value=0, max_value=Decimal("9999.99"), places=2)
BROKEN = b'{"refundId": "1", "status": "no such status"'  # invalid JSON: a dead letter


@st.composite
def payloads(draw: st.DrawFn) -> dict[str, Any] | bytes:
    if draw(st.integers(0, 9)) == 0:
        return BROKEN
    return camel_event(
        refund_id=draw(st.sampled_from(["51", "52", "53"])),
        status=draw(KINDS),
        price=str(draw(PRICES)),
        update_time=(START + timedelta(minutes=draw(st.integers(0, 30)))).isoformat(),
    )


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[RawDelivery], list[int]]:
    """Deliveries with resends (same delivery id) and copies (same content, new id), and the
    sizes of the consecutive batches they are cut into."""
    sent: list[RawDelivery] = []
    for _ in range(draw(st.integers(1, 14))):
        choice = draw(st.integers(0, 6)) if sent else 0
        if choice == 4:
            sent.append(draw(st.sampled_from(sent)))
        elif choice == 5:
            sent.append(delivery(draw(st.sampled_from(sent)).body))
        elif choice == 6:  # a delivery id reused for other content (valid or not)
            reused = draw(st.sampled_from(sent)).delivery_id
            sent.append(delivery(draw(payloads()), delivery_id=reused))
        else:
            sent.append(delivery(draw(payloads())))
    cuts = draw(st.lists(st.integers(1, len(sent)), max_size=3))
    return sent, cuts


def batches(sent: list[RawDelivery], cuts: list[int]) -> list[list[RawDelivery]]:
    bounds = [0, *sorted(set(cuts)), len(sent)]
    return [sent[start:end] for start, end in zip(bounds, bounds[1:], strict=False)
            if end > start]


def one_by_one(settings: Settings, sent: list[RawDelivery]) -> list[Result]:
    results = []
    for raw in sent:
        with session_factory(settings).begin() as session:
            results.extend(apply_deliveries([raw], session=session, naive_tz="UTC"))
    return results


def batched(settings: Settings, groups: list[list[RawDelivery]]) -> list[Result]:
    results = []
    for group in groups:
        with session_factory(settings).begin() as session:
            results.extend(apply_deliveries(group, session=session, naive_tz="UTC"))
    return results


def snapshot(settings: Settings) -> dict[str, Any]:
    """Every stored fact that does not depend on the clock or on generated row ids."""
    with session_factory(settings)() as session:
        messages = {m.id: m for m in session.scalars(select(MessageRecord))}
        return {
            "refunds": sorted(
                (r.shop, r.refund_id, r.status, r.refund_price, r.events_applied,
                 r.updated_at, str(r.fund_changes), r.note, r.order_id)
                for r in session.scalars(select(Refund))
            ),
            "messages": sorted((m.refund_id, m.fingerprint, m.delivery_id)
                               for m in messages.values()),
            "deliveries": sorted(
                (d.shop, d.delivery_id, d.body_sha256, d.outcome, d.refund_id,
                 None if d.message_id is None else messages[d.message_id].fingerprint)
                for d in session.scalars(select(DeliveryClaim))
            ),
            "dead_letters": sorted((d.shop, d.delivery_id, d.reason, d.state, d.attempts)
                                   for d in session.scalars(select(DeadLetter))),
            "archive": sorted((r.shop, r.delivery_id, r.body_sha256)
                              for r in session.scalars(select(RawDeliveryRecord))),
        }


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=traffic())
def test_batches_equal_one_by_one(settings: Settings, case: Any) -> None:
    sent, cuts = case
    clear(settings)
    expected_results = one_by_one(settings, sent)
    expected = snapshot(settings)
    clear(settings)
    assert batched(settings, batches(sent, cuts)) == expected_results
    assert snapshot(settings) == expected


def test_a_batch_reports_each_outcome(settings: Settings) -> None:
    first = delivery(camel_event(refund_id="61", status="in_progress", price="5.00",
                                 update_time="2025-03-01T10:00Z"))
    older = delivery(camel_event(refund_id="61", status="fund_change", price="4.00",
                                 update_time="2025-03-01T09:00Z"))
    apply(settings, delivery(camel_event(refund_id="62", update_time="2025-03-01T10:00Z")))
    group = [first, first, delivery(first.body), older, delivery(BROKEN)]
    with session_factory(settings).begin() as session:
        results = apply_deliveries(group, session=session, naive_tz="UTC")
    assert [(r.outcome, r.refund_id, r.stale) for r in results] == [
        (Outcome.APPLIED, "61", False),
        (Outcome.DUPLICATE_DELIVERY, "61", False),
        (Outcome.DUPLICATE_MESSAGE, "61", False),
        (Outcome.APPLIED, "61", True),
        (Outcome.DEAD_LETTERED, None, False),
    ]
    assert results[-1].reason == "invalid_json"
    assert view(settings, "61")["events_applied"] == 2


def test_two_batches_sharing_refunds_both_commit(pg_url: str) -> None:
    """Batches lock their refunds in one order: opposite arrival orders wait, never deadlock."""
    settings = make_settings(pg_url, lock_timeout_ms=10_000)
    ids = [str(7100 + n) for n in range(20)]
    forward = [delivery(camel_event(refund_id=i, status="in_progress", price="9.00",
                                    update_time="2025-03-01T10:00Z")) for i in ids]
    backward = [delivery(camel_event(refund_id=i, status="refunded", price="9.00",
                                     update_time="2025-03-01T11:00Z")) for i in reversed(ids)]
    errors: list[BaseException] = []

    def run(group: list[RawDelivery]) -> None:
        try:
            with session_factory(settings).begin() as session:
                apply_deliveries(group, session=session, naive_tz="UTC")
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(group,)) for group in (forward, backward)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert all(view(settings, i)["status"] == "refunded" for i in ids)
    assert all(view(settings, i)["events_applied"] == 2 for i in ids)
