"""Redis behind Sentinel: the ingest, its spool drain, a real worker, the ledger and its
sweeper all reach the master through a `sentinel://` REDIS_URL, and a failover forced under
steady traffic loses no accepted delivery and applies none twice."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from conftest import SECRET, make_settings
from processes import workers
from sentinel_group import SentinelGroup
from signing import genstore_headers

from broker.redis_client import redis_client
from ingest import create_app
from refunds.settings import Settings
from tests.faults import traffic
from tests.faults.measure import evaluate, wait_drained

pytestmark = pytest.mark.integration

RATE = 20  # deliveries per second
SECONDS = 15
FAILOVER_AT = 4  # seconds into the traffic, a second after the first worker stopped


def send(settings: Settings, deliveries: list[traffic.Delivery],
         answers: dict[str, int]) -> None:
    """As Genstore sends: at a steady rate, each delivery tried until a 2xx, up to 8 times."""
    client = create_app(settings).test_client()
    started = time.monotonic()
    for number, delivery in enumerate(deliveries):
        time.sleep(max(0.0, started + number / RATE - time.monotonic()))
        headers = genstore_headers(delivery.body, SECRET,
                                   **{"X-Genstore-Webhook-Id": delivery.delivery_id})
        for _ in range(8):
            status = client.post("/webhooks/genstore", data=delivery.body,
                                 headers=headers).status_code
            answers[delivery.delivery_id] = status
            if 200 <= status < 300:
                break
            time.sleep(0.2)


def test_a_failover_under_steady_traffic_loses_and_doubles_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    with SentinelGroup(tmp_path / "redis") as group:
        # given: the ingest and a worker on the Sentinel URL, and steady traffic
        settings = make_settings(pg_url, group.url, "sentinel-test:", visibility_timeout=10,
                                 task_time_limit=8, spool_dir=str(tmp_path / "spool"))
        deliveries = traffic.messages(RATE * SECONDS, random.Random(11), "failover")
        answers: dict[str, int] = {}
        sender = threading.Thread(target=send, args=(settings, deliveries, answers))
        with workers(settings, tmp_path) as [first]:
            started = time.monotonic()
            sender.start()
            time.sleep(FAILOVER_AT - 1)
            # a backlog on the master when it fails over, as when the workers lag behind: a
            # delivery only the old master held is lost when it rejoins as a replica
            first.stop()
        # when: the master is failed over mid-traffic
        happened = group.failover()
        sent_before = len(answers)
        with workers(settings, tmp_path) as [worker]:
            sender.join()
            drained = wait_drained(settings, redis_client(settings, timeout=5), timeout=90,
                                   stuck=60)
        # then: every delivery was accepted, and each applied exactly once
        accepted = {d for d, status in answers.items() if status == 202}
        result = evaluate(settings, "sentinel-failover", sent=len(answers), ok=len(accepted),
                          accepted=accepted, deliveries=deliveries, expected_dead={},
                          seconds=time.monotonic() - started)
        summary = (f"{happened} after {sent_before} sent; {result}; drained: {drained}; "
                   f"worker log {worker.log}")
        assert drained is None, summary
        assert len(accepted) == len(deliveries), summary
        assert 0 < sent_before < len(deliveries), summary  # the failover came mid-traffic
        assert (result.lost, result.doubled, result.mismatched) == (0, 0, 0), summary
        assert result.applied == len(deliveries) and result.dead_lettered == 0, summary
        # and the ingest's probes find the new master
        ready = create_app(settings).test_client().get("/readyz")
        assert ready.get_json()["broker"] == "ok", ready.get_json()
