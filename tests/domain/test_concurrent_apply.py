"""The one apply path under concurrency, on PostgreSQL: random traffic (resends of a delivery,
copies of a message under new delivery ids, conflicting bodies under one delivery id, two
shops, several refunds) split over several sessions that start together and apply their lists
at the same time, interleaved; every refund ends as the oracle says, every (shop, delivery id)
is claimed once, a conflict's losing body is kept as a dead letter, and no message is recorded
twice."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from conftest import make_settings
from deliveries import clear, delivery, view
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from oracle import actual_state, expected_state
from payloads import camel_event, to_body
from sqlalchemy import func, select

from refunds import dead_letters
from refunds.apply import apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord
from refunds.settings import Settings
from worker.retry import is_transient

START = datetime(2025, 3, 1, tzinfo=UTC)
SHOPS = ("shop-a.example", "shop-b.example")
REFUNDS = ("91", "92", "93")
KINDS = st.sampled_from(["in_progress", "refunded", "fund_change"])
PRICES = st.decimals(min_value=0, max_value=Decimal("999.99"), places=2)
SESSIONS = 4


@dataclass
class Traffic:
    messages: dict[tuple[str, str], list[dict[str, Any]]]  # payloads per (shop, refund id)
    sessions: list[list[list[RawDelivery]]]  # per session, its lists in order
    conflicts: list[tuple[RawDelivery, RawDelivery]]  # two bodies under one delivery id


@st.composite
def traffic(draw: st.DrawFn) -> Traffic:
    """Messages per (shop, refund) at distinct minutes, the deliveries that carry them (each at
    least once, some resent, some copied under a new id), conflicts (another message under a
    delivery id already sent), dealt to sessions in lists; a few deliveries open the first
    list of two sessions at once, so two sessions claim one key at the same moment."""
    messages: dict[tuple[str, str], list[dict[str, Any]]] = {}
    sent: list[RawDelivery] = []
    for shop in SHOPS:
        for refund_id in REFUNDS:
            minutes = draw(st.lists(st.integers(0, 300), min_size=1, max_size=4, unique=True))
            payloads = [_payload(draw, refund_id, minute) for minute in minutes]
            messages[(shop, refund_id)] = payloads
            sent.extend(delivery(payload, shop=shop) for payload in payloads)
    for original in draw(st.lists(st.sampled_from(list(sent)), max_size=12)):
        resend = draw(st.booleans())
        sent.append(original if resend else delivery(original.body, shop=original.shop))
    conflicts = []
    for number, original in enumerate(draw(st.lists(st.sampled_from(list(sent)), max_size=3,
                                                    unique_by=lambda raw: raw.key))):
        refund_id = json.loads(original.body)["refund"]["id"]
        payload = _payload(draw, refund_id, 400 + number)  # a minute no other message has
        messages[(original.shop, refund_id)].append(payload)
        conflicts.append((original, delivery(payload, shop=original.shop,
                                             delivery_id=original.delivery_id)))
    order = draw(st.permutations([*sent, *(other for _, other in conflicts)]))
    dealt = draw(st.lists(st.integers(0, SESSIONS - 1), min_size=len(order),
                          max_size=len(order)))
    sizes = draw(st.lists(st.integers(1, 5), min_size=SESSIONS, max_size=SESSIONS))
    contested = draw(st.lists(st.sampled_from(list(sent)), max_size=3))
    sessions: list[list[list[RawDelivery]]] = []
    for number in range(SESSIONS):
        mine = [raw for raw, to in zip(order, dealt, strict=True) if to == number]
        size = sizes[number]
        lists = [mine[i:i + size] for i in range(0, len(mine), size)]
        sessions.append([contested, *lists] if number < 2 and contested else lists)
    return Traffic(messages, sessions, conflicts)


def _payload(draw: st.DrawFn, refund_id: str, minute: int) -> dict[str, Any]:
    return camel_event(refund_id=refund_id, status=draw(KINDS), price=str(draw(PRICES)),
                       update_time=(START + timedelta(minutes=minute)).isoformat())


def apply_with_retries(settings: Settings, lists: list[list[RawDelivery]],
                       start: threading.Barrier, errors: list[BaseException]) -> None:
    """What a worker does: each list in its own transaction, tried again on a transient
    failure (a lock timeout or a deadlock between sessions)."""
    try:
        start.wait(timeout=30)
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
def test_finding_5_concurrent_sessions_end_as_the_oracle(pg_url: str, case: Traffic) -> None:
    settings = make_settings(pg_url, lock_timeout_ms=5_000)
    clear(settings)
    # when several sessions apply their share of the traffic at the same time
    errors: list[BaseException] = []
    start = threading.Barrier(SESSIONS)
    threads = [threading.Thread(target=apply_with_retries,
                                args=(settings, lists, start, errors))
               for lists in case.sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    # then each (shop, delivery id) is claimed once, with one of the bodies sent under it
    with session_factory(settings)() as session:
        claims = session.execute(select(DeliveryClaim.shop, DeliveryClaim.delivery_id,
                                        DeliveryClaim.body_sha256)).all()
        letters = {tuple(row) for row in session.execute(
            select(DeadLetter.shop, DeadLetter.delivery_id, DeadLetter.reason))}
        recorded = session.scalar(select(func.count()).select_from(MessageRecord))
    delivered = {raw.key for lists in case.sessions for deliveries in lists for raw in deliveries}
    assert sorted((shop, delivery_id) for shop, delivery_id, _ in claims) == sorted(delivered)
    # and of two bodies under one delivery id, the one that lost is a conflict, kept
    claimed = {(shop, digest) for shop, _, digest in claims}
    for first, other in case.conflicts:
        [winner] = [body for body in (first, other)
                    if (*body.key, body.body_sha256) in {tuple(c) for c in claims}]
        loser = other if winner is first else first
        assert (*dead_letters.conflicting(loser).key, "delivery_conflict") in letters
    # and every refund is the oracle's reading of the messages whose body was claimed
    applied_count = 0
    for (shop, refund_id), payloads in case.messages.items():
        applied = [p for p in payloads if (shop, _digest(p)) in claimed]
        applied_count += len({str(p) for p in applied})
        if applied:
            assert actual_state(view(settings, refund_id, shop=shop)) == expected_state(applied)
    assert recorded == applied_count


def _digest(payload: dict[str, Any]) -> str:
    return hashlib.sha256(to_body(payload)).hexdigest()
