"""Two sinks on one Redis and one key prefix, told apart by REFUND_SINK_QUEUE, each with its
own database (the README's way to run several): real Redis, real PostgreSQL, real workers.
One sink's workers are down past the visibility timeout while the other's run with their
sweepers: nothing crosses (issue 10, finding 4)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from backing_services import postgres_server, scratch_database
from conftest import make_settings
from deliveries import delivery
from payloads import camel_event
from processes import wait_for, workers
from queued_messages import envelopes, ledger_entries
from sqlalchemy import select

from broker.app import make_celery
from broker.ledger import Ledger
from broker.publish import publish
from refund_sink.operations import upgrade_database
from refunds.db import session_factory
from refunds.models import Refund
from refunds.settings import Settings

pytestmark = pytest.mark.integration
VISIBILITY_TIMEOUT = 10  # the shortest the settings accept


@pytest.fixture
def other_pg_url() -> Iterator[str]:
    """A second database on the same PostgreSQL server, for the second sink."""
    with postgres_server() as admin_url, scratch_database(admin_url) as url:
        upgrade_database(Settings(database_url=url))
        yield url


def sink(database_url: str, redis_url: str, key_prefix: str, name: str) -> Settings:
    settings = make_settings(database_url, redis_url, key_prefix,
                             visibility_timeout=VISIBILITY_TIMEOUT, task_time_limit=8,
                             retry_max_seconds=0.5)
    return replace(settings, queue=f"{settings.queue}-{name}")


def publish_refunds(settings: Settings, *refund_ids: str) -> list[str]:
    """Deliveries published as the ingest publishes them; their task message ids."""
    app = make_celery(settings)
    return [publish(app, delivery(camel_event(refund_id=refund_id), delivery_id=f"d-{refund_id}"))
            for refund_id in refund_ids]


def queued_ids(settings: Settings) -> list[str]:
    return [envelope["headers"]["id"] for envelope in envelopes(settings)]


def stored_refunds(settings: Settings) -> set[str]:
    with session_factory(settings)() as session:
        return set(session.scalars(select(Refund.refund_id)))


def test_two_sinks_on_one_redis_and_prefix_never_cross(
    pg_url: str, other_pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    a = sink(pg_url, redis_url, key_prefix, "a")
    b = sink(other_pg_url, redis_url, key_prefix, "b")
    # given sink A's deliveries waiting while its workers are down, then sink B's, one of
    # which a B worker loses in kombu's fetch window (popped, never recorded as unacked)
    sent_a = publish_refunds(a, "a-1", "a-2", "a-3")
    published_at = time.monotonic()
    publish_refunds(b, "b-1", "b-2")
    ledger = Ledger(b)
    try:
        assert ledger.client.rpop(b.redis_key_prefix + b.queue) is not None
    finally:
        ledger.client.close()
    # when B's workers run past the visibility timeout: their sweeper puts B's lost
    # delivery back, by then older than the timeout, as are all of A's
    with workers(b, tmp_path, count=1) as [worker_b]:
        wait_for(lambda: {"b-1", "b-2"} <= stored_refunds(b), 4 * VISIBILITY_TIMEOUT,
                 "B's lost delivery not put back")
        wait_for(lambda: not ledger_entries(b), 10, "B's ledger not settled")
        assert time.monotonic() - published_at >= VISIBILITY_TIMEOUT
        republished_by_b = worker_b.output().count('"event": "delivery republished"')
    # then nothing of A's was applied in B's database or moved onto B's queue
    assert stored_refunds(b) == {"b-1", "b-2"} and queued_ids(b) == []
    assert republished_by_b == 1
    assert sorted(queued_ids(a)) == sorted(sent_a) and set(ledger_entries(a)) == set(sent_a)
    assert stored_refunds(a) == set()
    # and when A's workers start, A's deliveries are applied in A's own database
    with workers(a, tmp_path, count=1):
        wait_for(lambda: stored_refunds(a) == {"a-1", "a-2", "a-3"}, 30,
                 "A's deliveries not applied")
        wait_for(lambda: not ledger_entries(a), 10, "A's ledger not settled")
    assert stored_refunds(b) == {"b-1", "b-2"}
