"""Two workers on one refund take turns (PostgreSQL row lock): no lost update."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from conftest import make_settings
from deliveries import apply, delivery, view
from payloads import camel_event

from refunds.apply import apply_deliveries
from refunds.db import session_factory


def test_concurrent_messages_of_one_refund_are_both_kept(pg_url: str) -> None:
    settings = make_settings(pg_url, lock_timeout_ms=10_000)
    apply(settings, delivery(camel_event(status="in_progress", update_time="2025-03-01T10:00Z")))
    # given worker A inside its transaction for message 2, not yet committed
    session_a = session_factory(settings)()
    session_a.begin()
    apply_deliveries([delivery(camel_event(status="fund_change", price="20.00",
                                           update_time="2025-03-01T10:05Z"))],
                     session=session_a, naive_tz="UTC")
    # when worker B applies message 3 of the same refund
    worker_b = threading.Thread(target=apply, args=(settings, delivery(
        camel_event(status="refunded", price="20.00", update_time="2025-03-01T10:09Z"))))
    worker_b.start()
    worker_b.join(timeout=1.0)
    # then B waits for A's lock, and after A commits both messages are in the refund
    assert worker_b.is_alive(), "B did not wait for A's row lock"
    session_a.commit()
    session_a.close()
    worker_b.join(timeout=15)
    state = view(settings, "7001")
    assert state["events_applied"] == 3
    assert (state["status"], state["refund_price"]) == ("refunded", "20.00")
    assert len(state["fund_changes"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("header", ["x-genstore-shop-domain", "x-genstore-topic"])
def test_overlong_headers_still_end_applied_or_dead_lettered(db_url: str, header: str) -> None:
    from refunds.delivery import RawDelivery

    settings = make_settings(db_url)
    headers = {"x-genstore-topic": "refunds/create", header: "refunds/" + "x" * 600}
    raw = RawDelivery.from_request(b'{"refund": {"id": "1"}}', headers, datetime.now(UTC))
    assert len(raw.shop) <= 255 and len(raw.topic or "") <= 255
    assert apply(settings, raw).value in ("applied", "dead_lettered")
