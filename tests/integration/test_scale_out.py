"""Scaling out: two ingest processes (gunicorn) and three worker processes on one Redis and
one PostgreSQL keep every guarantee: shuffled traffic with repeats ends in the oracle's state."""

from __future__ import annotations

import http.client
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, make_settings
from deliveries import view
from oracle import actual_state, expected_state
from payloads import camel_event, to_body
from processes import ingest, wait_for, workers
from signing import genstore_headers
from sqlalchemy import func, select

from refunds.db import session_factory
from refunds.models import DeliveryClaim

pytestmark = pytest.mark.integration


def traffic(rng: random.Random) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list]]:
    by_refund: dict[str, list[dict[str, Any]]] = defaultdict(list)
    sent = []
    for number in range(240):
        refund_id = str(500 + number % 40)
        minute = len(by_refund[refund_id])
        payload = camel_event(refund_id=refund_id,
                              status=rng.choice(["in_progress", "fund_change", "refunded"]),
                              price=f"{rng.randint(1, 9999) / 100:.2f}",
                              update_time=f"2025-03-01T10:{minute:02d}:00Z")
        by_refund[refund_id].append(payload)
        sent.append((f"s-{number}", payload))
    sent += rng.sample(sent, 60)  # repeats under the same delivery id
    rng.shuffle(sent)
    return sent, by_refund


def test_two_ingest_and_three_worker_processes(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(pg_url, redis_url, key_prefix)
    sent, by_refund = traffic(random.Random(5))
    with ingest(settings, tmp_path / "ingest.log", workers=2) as port, \
            workers(settings, tmp_path, count=3, concurrency=1):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for delivery_id, payload in sent:
            body = to_body(payload)
            connection.request("POST", "/webhooks/genstore", body, genstore_headers(
                body, SECRET, **{"X-Genstore-Webhook-Id": delivery_id}))
            response = connection.getresponse()
            response.read()
            assert response.status == 202
        wait_for(lambda: _recorded(settings) == 240, 120, "not all deliveries applied")
    for refund_id, payloads in by_refund.items():
        assert actual_state(view(settings, refund_id)) == expected_state(payloads), refund_id


def _recorded(settings: Any) -> int:
    with session_factory(settings)() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryClaim)) or 0)
