"""Broker outage: the ingest keeps answering 202 from its spool, then hands everything to the
broker when it returns, delivery ids intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from backing_services import stop
from conftest import SECRET, make_settings
from payloads import camel_event, to_body
from processes import wait_for, workers
from queued_messages import envelopes, ledger_entries, queued
from signing import genstore_headers
from sqlalchemy import select

from ingest import create_app
from refund_sink.servers import free_port, start_redis
from refunds.db import session_factory
from refunds.models import DeliveryClaim
from refunds.settings import Settings

pytestmark = pytest.mark.integration


def test_deliveries_during_a_broker_outage_are_spooled_then_queued(tmp_path: Path) -> None:
    port = free_port()
    redis_dir = tmp_path / "redis"
    broker = start_redis(redis_dir, port)
    unused_database = f"sqlite:///{tmp_path / 'unused.db'}"  # /readyz opens it
    settings = make_settings(unused_database, f"redis://127.0.0.1:{port}/0",
                             spool_dir=str(tmp_path / "spool"))
    client = create_app(settings).test_client()
    stop(broker)
    try:
        # while Redis is down every signed delivery is still accepted
        for number in range(20):
            body = to_body(camel_event(refund_id=str(number)))
            headers = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": f"w-{number}"})
            response = client.post("/webhooks/genstore", data=body, headers=headers)
            assert response.status_code == 202
        ready = client.get("/readyz/webhooks")
        assert ready.status_code == 200
        assert ready.get_json() == {"status": "degraded", "broker": "unavailable",
                                    "spool": "in_use", "spooled": 20}
        assert client.get("/readyz").status_code == 503  # the SPEC's: broker unreachable
        # when Redis comes back, the drainer hands every delivery over, ids intact
        broker = start_redis(redis_dir, port)
        wait_for(lambda: len(queued(settings)) == 20, 30, "spool not drained")
        assert sorted(raw.delivery_id for raw in queued(settings)) == sorted(
            f"w-{number}" for number in range(20))
        assert {envelope["headers"]["id"] for envelope in envelopes(settings)} == set(
            ledger_entries(settings))
        assert client.get("/readyz").get_json()["spool"] == "empty"
    finally:
        stop(broker)


@pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])
def test_workers_apply_at_once_after_a_redis_restart(
    pg_url: str, tmp_path: Path, batch_size: int
) -> None:
    # A part-filled batch waits for its flush timer; Celery clears the event loop's timers
    # when the broker connection drops, so the worker must start a new one.
    port = free_port()
    redis_dir = tmp_path / "redis"
    broker = start_redis(redis_dir, port)
    settings = make_settings(pg_url, f"redis://127.0.0.1:{port}/0", visibility_timeout=20,
                             task_time_limit=15, batch_size=batch_size, batch_wait_ms=3000)
    client = create_app(settings).test_client()

    def send(number: int) -> None:
        body = to_body(camel_event(refund_id=str(number)))
        headers = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": f"r-{number}"})
        assert client.post("/webhooks/genstore", data=body, headers=headers).status_code == 202

    try:
        with workers(settings, tmp_path) as [worker]:
            send(1)  # in batch mode: buffered, its flush timer armed for 3 s
            wait_for(lambda: "r-1" in worker.output(), 10, "first delivery not received")
            stop(broker)
            broker = start_redis(redis_dir, port)
            wait_for(lambda: worker.output().count("Connected to ") == 2, 60,
                     "worker did not reconnect")
            for number in range(2, 5):
                send(number)
            # applied with the next flush, not left to the visibility timeout (20 s)
            wait_for(lambda: {"r-2", "r-3", "r-4"} <= applied(settings), 15,
                     "deliveries stuck after the restart")
            wait_for(lambda: len(applied(settings)) == 4, 60, "first delivery lost")
    finally:
        stop(broker)


def applied(settings: Settings) -> set[str]:
    with session_factory(settings)() as session:
        return set(session.scalars(select(DeliveryClaim.delivery_id)))
