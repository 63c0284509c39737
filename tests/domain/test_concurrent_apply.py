"""The one apply path under concurrency, on PostgreSQL: random traffic (resends of a delivery,
copies of a message under new delivery ids, two shops, several refunds) split over several
sessions that apply their lists at the same time, interleaved; every refund ends as the oracle
says, every (shop, delivery id) is claimed once, and no message is recorded twice."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from conftest import make_settings
from deliveries import clear, delivery, view
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oracle import actual_state, expected_state
from payloads import camel_event
from sqlalchemy import func, select

from refunds.apply import apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeliveryClaim, MessageRecord
from refunds.settings import Settings
from worker.retry import is_transient

START = datetime(2025, 3, 1, tzinfo=UTC)
SHOPS = ("shop-a.example", "shop-b.example")
REFUNDS = ("91", "92", "93")
KINDS = st.sampled_from(["in_progress", "refunded", "fund_change"])
PRICES = st.decimals(min_value=0, max_value=Decimal("999.99"), places=2)
SESSIONS = 4


@st.composite
def traffic(draw: st.DrawFn) -> tuple[dict[tuple[str, str], list[dict[str, Any]]],
                                      list[list[list[RawDelivery]]]]:
    """Messages per (shop, refund) at distinct minutes, the deliveries that carry them (each at
    least once, some resent, some copied under a new id), dealt to sessions in lists."""
    messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
    sent: list[RawDelivery] = []
    for shop in SHOPS:
        for refund_id in REFUNDS:
            minutes = draw(st.lists(st.integers(0, 300), min_size=1, max_size=4, unique=True))
            payloads = [camel_event(refund_id=refund_id, status=draw(KINDS),
                                    price=str(draw(PRICES)),
                                    update_time=(START + timedelta(minutes=m)).isoformat())
                        for m in minutes]
            messages[(shop, refund_id)] = payloads
            sent.extend(delivery(payload, shop=shop) for payload in payloads)
    for original in draw(st.lists(st.sampled_from(list(sent)), max_size=12)):
        resend = draw(st.booleans())
        sent.append(original if resend else delivery(original.body, shop=original.shop))
    order = draw(st.permutations(sent))
    dealt = draw(st.lists(st.integers(0, SESSIONS - 1), min_size=len(order),
                          max_size=len(order)))
    sizes = draw(st.lists(st.integers(1, 5), min_size=SESSIONS, max_size=SESSIONS))
    sessions: list[list[list[RawDelivery]]] = []
    for number in range(SESSIONS):
        mine = [raw for raw, to in zip(order, dealt, strict=True) if to == number]
        size = sizes[number]
        sessions.append([mine[i:i + size] for i in range(0, len(mine), size)])
    return messages, sessions


def apply_with_retries(settings: Settings, lists: list[list[RawDelivery]],
                       errors: list[BaseException]) -> None:
    """What a worker does: each list in its own transaction, tried again on a transient
    failure (a lock timeout or a deadlock between sessions)."""
    try:
        for deliveries in lists:
            for attempt in range(20):
                try:
                    with session_factory(settings).begin() as session:
                        apply_deliveries(deliveries, session=session, naive_tz="UTC")
                    break
                except Exception as error:
                    if not is_transient(error) or attempt == 19:
                        raise
                    time.sleep(0.01 * attempt)
    except BaseException as error:  # noqa: BLE001 - reported by the test's assertion
        errors.append(error)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=traffic())
def test_finding_5_concurrent_sessions_end_as_the_oracle(pg_url: str, case: Any) -> None:
    settings = make_settings(pg_url, lock_timeout_ms=5_000)
    messages, sessions = case
    clear(settings)
    # when several sessions apply their share of the traffic at the same time
    errors: list[BaseException] = []
    threads = [threading.Thread(target=apply_with_retries, args=(settings, lists, errors))
               for lists in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then every refund is the oracle's, each delivery claimed once, each message once
    assert errors == []
    for (shop, refund_id), payloads in messages.items():
        assert actual_state(view(settings, refund_id, shop=shop)) == expected_state(payloads)
    delivered = {raw.key for lists in sessions for deliveries in lists for raw in deliveries}
    with session_factory(settings)() as session:
        claims = session.execute(select(DeliveryClaim.shop, DeliveryClaim.delivery_id)).all()
        recorded = session.scalar(select(func.count()).select_from(MessageRecord))
    assert sorted(claims) == sorted(delivered)
    assert recorded == sum(len({str(p) for p in payloads}) for payloads in messages.values())
