"""Real Redis, real PostgreSQL, real `celery worker` processes: concurrency, retries, kills."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, make_settings
from deliveries import view
from flask.testing import FlaskClient
from oracle import actual_state, expected_state
from payloads import camel_event, spec_sequence, to_body
from processes import environment, wait_for, workers
from queued_messages import ledger_entries, queued
from signing import genstore_headers
from sqlalchemy import func, select, text

from broker.ledger import Ledger
from ingest import create_app
from refunds.db import session_factory
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord
from refunds.settings import Settings

pytestmark = pytest.mark.integration


# Every test runs the one-message task and the batch mode (REFUND_SINK_BATCH_SIZE).
BATCH_SIZES = pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])


@pytest.fixture(params=[1, 20], ids=["one", "batches"])
def stack_settings(
    pg_url: str, redis_url: str, key_prefix: str, request: pytest.FixtureRequest
) -> Settings:
    return make_settings(pg_url, redis_url, key_prefix, visibility_timeout=10,
                         task_time_limit=8, retry_max_seconds=0.5, batch_size=request.param)


@pytest.fixture
def client(stack_settings: Settings) -> FlaskClient:
    return create_app(stack_settings).test_client()


def send(client: FlaskClient, payload: dict[str, Any], delivery_id: str | None = None) -> None:
    body = to_body(payload)
    extra = {"X-Genstore-Webhook-Id": delivery_id} if delivery_id else {}
    response = client.post("/webhooks/genstore", data=body,
                           headers=genstore_headers(body, SECRET, **extra))
    assert response.status_code == 202, response.get_data()


def count(settings: Settings, model: type) -> int:
    with session_factory(settings)() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_spec_sequence_through_ingest_and_workers(
    client: FlaskClient, stack_settings: Settings, tmp_path: Path
) -> None:
    sequence = spec_sequence()
    random.Random(3).shuffle(sequence)
    with workers(stack_settings, tmp_path, count=1, concurrency=2):
        for number, payload in enumerate(sequence * 2):  # every delivery twice, new ids
            send(client, payload, delivery_id=f"d-{number}")
        wait_for(lambda: count(stack_settings, DeliveryClaim) == 6, 60, "deliveries not processed")
    state = view(stack_settings, "7001")
    assert (state["status"], state["refund_price"], state["events_applied"]) == (
        "refunded", "20.00", 3)


def _random_traffic(rng: random.Random) -> tuple[list[tuple[str, dict[str, Any]]], dict]:
    """1,000 deliveries for 100 refunds: 700 distinct messages, 300 resent (half under the
    same delivery id, half as the same content under a new id), shuffled."""
    by_refund: dict[str, list[dict[str, Any]]] = defaultdict(list)
    distinct: list[tuple[str, dict[str, Any]]] = []
    for number in range(700):
        refund_id = str(100_000 + number % 100)
        minute = len(by_refund[refund_id])
        payload = camel_event(
            refund_id=refund_id, order_id=f"9{refund_id}",
            status=rng.choice(["in_progress", "fund_change", "refunded"]),
            price=f"{rng.randint(1, 99999) / 100:.2f}",
            update_time=f"2025-03-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
            note=rng.choice([None, "n1", "退款"]),
        )
        by_refund[refund_id].append(payload)
        distinct.append((f"m-{number}", payload))
    resent = [
        (delivery_id if rng.random() < 0.5 else f"{delivery_id}-again", payload)
        for delivery_id, payload in rng.sample(distinct, 300)
    ]
    traffic = distinct + resent
    rng.shuffle(traffic)
    return traffic, by_refund


def test_two_workers_thousand_shuffled_deliveries_match_the_oracle(
    client: FlaskClient, stack_settings: Settings, tmp_path: Path
) -> None:
    traffic, by_refund = _random_traffic(random.Random(2026))
    with workers(stack_settings, tmp_path, count=2, concurrency=2):
        for delivery_id, payload in traffic:
            send(client, payload, delivery_id)
        unique_ids = len({delivery_id for delivery_id, _ in traffic})
        wait_for(lambda: count(stack_settings, DeliveryClaim) == unique_ids, 180,
                 "traffic not drained")
        wait_for(lambda: not ledger_entries(stack_settings), 10, "ledger entries not settled")
    assert count(stack_settings, MessageRecord) == 700
    assert count(stack_settings, DeadLetter) == 0
    for refund_id, payloads in by_refund.items():
        assert actual_state(view(stack_settings, refund_id)) == expected_state(payloads), refund_id


@contextmanager
def _first_applied_then_locked(settings: Settings, client: FlaskClient) -> Iterator[None]:
    """The SPEC's first message applied to refund 7001, whose row an open transaction then
    holds locked (as a long migration or a stuck report might) until the block ends: the
    next message of that refund waits, as the test needs."""
    send(client, spec_sequence()[0])
    wait_for(lambda: count(settings, DeliveryClaim) == 1, 30, "first message not applied")
    lock = session_factory(settings)()
    try:
        lock.execute(text("SELECT 1 FROM refunds WHERE refund_id = '7001' FOR UPDATE"))
        yield
    finally:
        lock.rollback()
        lock.close()


@BATCH_SIZES
def test_transient_failure_retries_then_dead_letters_then_requeue_applies_once(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    settings = make_settings(pg_url, redis_url, key_prefix, max_retries=3, batch_size=batch_size,
                             lock_timeout_ms=200, retry_base_seconds=0.2, retry_max_seconds=1)
    client = create_app(settings).test_client()
    second = spec_sequence()[1]
    with workers(settings, tmp_path) as [worker]:
        with _first_applied_then_locked(settings, client):
            send(client, second, delivery_id="held")
            wait_for(lambda: count(settings, DeadLetter) == 1, 60, "no dead letter")
        with session_factory(settings)() as session:
            letter = session.scalars(select(DeadLetter)).one()
        assert (letter.reason, letter.attempts, letter.state) == ("retries_exhausted", 3, "dead")
        assert "LockNotAvailable" in letter.error
        assert worker.output().count('"event": "delivery retry"') == 2
        for _ in range(2):  # requeuing twice applies once
            subprocess.run([sys.executable, "-m", "refund_sink.cli", "dlq", "requeue",
                            str(letter.id)], env=environment(settings), check=True)
        wait_for(lambda: view(settings, "7001")["events_applied"] == 2, 30, "requeue not applied")
        wait_for(lambda: count(settings, DeliveryClaim) == 2, 30, "requeue not recorded")
        wait_for(lambda: not ledger_entries(settings), 10, "ledger entries not settled")
    with session_factory(settings)() as session:
        assert session.scalars(select(DeadLetter.state)).one() == "resolved"
    assert count(settings, MessageRecord) == 2


def test_a_locked_refund_delays_only_its_own_delivery_in_a_batch(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, redis_url, key_prefix, batch_size=20, batch_wait_ms=1000,
                             lock_timeout_ms=200, retry_base_seconds=0.5, retry_max_seconds=1)
    client = create_app(settings).test_client()
    second = spec_sequence()[1]
    with workers(settings, tmp_path) as [worker]:
        with _first_applied_then_locked(settings, client):
            # given one batch holding a delivery for the locked refund and one for another
            send(client, second, delivery_id="held")
            send(client, camel_event(refund_id="7002"), delivery_id="free")
            # then the other refund is applied at once, while the held one is retried
            wait_for(lambda: "free" in _applied_ids(settings), 30,
                     "the free delivery waited for the locked refund")
            assert "held" not in _applied_ids(settings)
        wait_for(lambda: "held" in _applied_ids(settings), 30, "held delivery not retried")
        output = worker.output()
    assert '"event": "batch failed", "deliveries": 2' in output
    assert '"then": "apply each alone"' in output
    retried = [line for line in output.splitlines() if '"event": "delivery retry"' in line]
    assert retried and all('"delivery_id": "held"' in line for line in retried)
    assert view(settings, "7001")["events_applied"] == 2
    assert view(settings, "7002")["events_applied"] == 1


def _applied_ids(settings: Settings) -> set[str]:
    with session_factory(settings)() as session:
        return set(session.scalars(select(DeliveryClaim.delivery_id)))


@BATCH_SIZES
def test_sigkilled_worker_message_is_applied_once_after_visibility_timeout(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    # the worker waits up to 6 s for the row lock (statement timeout 7 s), long enough to be
    # killed while it holds the message
    settings = make_settings(pg_url, redis_url, key_prefix, visibility_timeout=15,
                             task_time_limit=13, lock_timeout_ms=6000, batch_size=batch_size)
    client = create_app(settings).test_client()
    second = spec_sequence()[1]
    with workers(settings, tmp_path) as [worker], _first_applied_then_locked(settings, client):
        send(client, second, delivery_id="in-flight")
        wait_for(lambda: "in-flight" in _active(settings), 30, "message not taken")
        worker.kill()  # while it waits for the row lock inside the task
    assert count(settings, DeliveryClaim) == 1
    with workers(settings, tmp_path):
        took = wait_for(lambda: count(settings, DeliveryClaim) == 2, 60, "message lost")
    assert took < 15 + 15  # visibility timeout + restore sweep + start-up
    assert view(settings, "7001")["events_applied"] == 2
    assert count(settings, MessageRecord) == 2


@BATCH_SIZES
def test_a_message_lost_in_kombus_fetch_window_is_published_again_and_applied_once(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    # kombu pops a message before recording it as unacked (celery#7950): a worker killed in
    # between loses it. Simulated here by popping it by hand before any worker runs.
    settings = make_settings(pg_url, redis_url, key_prefix, visibility_timeout=10,
                             task_time_limit=8, batch_size=batch_size)
    client = create_app(settings).test_client()
    for payload in spec_sequence():
        send(client, payload)
    sent_at = time.monotonic()
    client_redis = Ledger(settings).client
    popped = client_redis.rpop(settings.redis_key_prefix + settings.queue)
    assert popped is not None and len(queued(settings)) == 2
    with workers(settings, tmp_path, count=2) as started:
        wait_for(lambda: count(settings, DeliveryClaim) == 3, 60, "lost message not applied")
        took = time.monotonic() - sent_at
        wait_for(lambda: not ledger_entries(settings), 10, "ledger entries not settled")
        republished = [w.output().count('"event": "delivery republished"') for w in started]
    assert sorted(republished) == [0, 1]  # one sweeper at a time, one copy
    assert 10 <= took < 10 + 20  # after the visibility timeout, within a few sweeps
    state = view(settings, "7001")
    assert (state["status"], state["events_applied"]) == ("refunded", 3)


def _active(settings: Settings) -> str:
    """DeliveryClaim ids in Redis's unacked hash (messages a worker holds)."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    try:
        held = client.hvals(settings.redis_key_prefix + "unacked")
    finally:
        client.close()
    return " ".join(value.decode(errors="replace") for value in held)
