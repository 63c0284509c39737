"""The ledger (`broker.ledger`) and the transport's publish script (`broker.transport`) on
fakeredis: the EVAL that writes entry, time and queued message in one round trip runs on
fakeredis's Lua (lupa), and kombu's channel publishes through a fakeredis pool.

Where fakeredis differs, real Redis tests it: fakeredis has no `WAIT` ("unknown command"), so
the replicas' confirmation and `NotReplicated` are left to `tests/integration/test_sentinel.py`;
kombu's fetch and acknowledgement need a worker's event loop and are left to
`tests/integration/test_ledger.py` and `test_two_sinks.py`."""

from __future__ import annotations

import json
import time

import fakeredis
import pytest
import redis
from conftest import make_settings
from deliveries import delivery
from fake_redis import REDIS_URL
from payloads import camel_event
from queued_messages import envelopes, ledger_entries

from broker.app import make_celery
from broker.ledger import Ledger
from broker.publish import publish
from refunds.delivery import RawDelivery
from refunds.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings("sqlite://", REDIS_URL, "unit:", visibility_timeout=10,
                         task_time_limit=8)


def published(settings: Settings, *refund_ids: str) -> dict[str, RawDelivery]:
    found = {}
    for refund_id in refund_ids:
        raw = delivery(camel_event(refund_id=refund_id), delivery_id=f"d-{refund_id}")
        found[publish(make_celery(settings), raw)] = raw
    return found


def test_a_publish_queues_the_message_and_its_entry_under_the_prefix(
    settings: Settings, fake_client: redis.Redis
) -> None:
    # when two deliveries are published
    before = time.time()
    sent = published(settings, "1", "2")
    # then each is queued and in the ledger, the entry holding the message exactly as queued
    assert [envelope["headers"]["id"] for envelope in envelopes(settings)] == list(sent)
    assert ledger_entries(settings) == sent
    ledger = Ledger(settings)
    queued = fake_client.lrange(settings.redis_key_prefix + settings.queue, 0, -1)
    assert sorted(queued) == sorted(fake_client.hvals(ledger.entries))
    assert ledger.size() == 2
    oldest = ledger.oldest()
    assert oldest is not None and before <= oldest <= time.time()
    # and the script's keys carry the prefix kombu adds only to the commands it knows
    assert all(key.startswith("unit:") for key in fake_client.keys("*"))


def test_a_message_of_another_task_passes_without_an_entry(
    settings: Settings, fake_client: redis.Redis
) -> None:
    make_celery(settings).send_task("some.other.task", args=[1], retry=False)
    assert len(envelopes(settings)) == 1
    assert ledger_entries(settings) == {}
    assert Ledger(settings).size() == 0


def test_settling_forgets_only_the_named_entries(settings: Settings) -> None:
    sent = list(published(settings, "1", "2", "3"))
    ledger = Ledger(settings)
    ledger.settle([sent[0], sent[2], "never-published"])
    ledger.settle([])
    assert list(ledger_entries(settings)) == [sent[1]]
    assert ledger.size() == 1


def test_settling_while_redis_is_away_leaves_the_entries_to_the_sweeper(
    settings: Settings, fake_server: fakeredis.FakeServer
) -> None:
    sent = list(published(settings, "1"))
    ledger = Ledger(settings)
    fake_server.connected = False
    ledger.settle(sent)  # no error: the sweeper finds it settled in the database later
    fake_server.connected = True
    assert list(ledger_entries(settings)) == sent


def test_recorded_before_gives_the_oldest_first_up_to_the_limit(
    settings: Settings, fake_client: redis.Redis
) -> None:
    sent = list(published(settings, "1", "2", "3"))
    ledger = Ledger(settings)
    now = time.time()
    fake_client.zadd(ledger.recorded_at, {sent[0]: now - 30, sent[1]: now - 60})
    found = ledger.recorded_before(now - 20, limit=1)
    assert list(found) == [sent[1]]
    assert found[sent[1]][0] == pytest.approx(now - 60)
    assert json.loads(found[sent[1]][1])["headers"]["id"] == sent[1]
    assert set(ledger.recorded_before(now - 20, limit=10)) == {sent[0], sent[1]}


def test_a_time_without_its_entry_is_dropped_when_read(
    settings: Settings, fake_client: redis.Redis
) -> None:
    # given a recorded time whose entry is gone (settled between the two reads)
    [message_id] = published(settings, "1")
    ledger = Ledger(settings)
    fake_client.zadd(ledger.recorded_at, {message_id: 1.0, "orphan": 1.0})
    # when the old entries are read, the orphan is not one and its time goes
    assert list(ledger.recorded_before(time.time(), limit=10)) == [message_id]
    assert fake_client.zrange(ledger.recorded_at, 0, -1) == [message_id]


def test_put_back_queues_the_message_again_and_renews_its_time(
    settings: Settings, fake_client: redis.Redis
) -> None:
    [message_id] = published(settings, "1")
    ledger = Ledger(settings)
    queue = settings.redis_key_prefix + settings.queue
    [message] = fake_client.lrange(queue, 0, -1)
    fake_client.delete(queue)
    fake_client.zadd(ledger.recorded_at, {message_id: 1.0})
    ledger.put_back(message_id, message, queue)
    assert fake_client.lrange(queue, 0, -1) == [message]
    assert ledger.oldest() == pytest.approx(time.time(), abs=5)
    assert ledger.recorded_before(time.time() - 60, limit=10) == {}
