"""The sweeper's decision rules (`worker.sweeper`) on fakeredis and SQLite: which ledger entries
it puts back on the queue, which it forgets, which it leaves alone; its `IN_FLIGHT` scan runs
on fakeredis's Lua (lupa, with `cjson`), its lock on fakeredis's `SET NX PX` and scripts.

Left to `tests/integration/test_ledger.py` (real Redis, both databases): the same rules against
kombu's real `unacked` hash and PostgreSQL's settled-copy query."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import fakeredis
import pytest
import redis
from conftest import make_settings
from deliveries import apply, delivery
from fake_redis import REDIS_URL
from payloads import camel_event
from queued_messages import envelopes, ledger_entries

from broker.app import make_celery
from broker.publish import publish
from refunds import dead_letters
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.settings import Settings
from worker import sweeper as sweeper_module
from worker.sweeper import Sweeper

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(sqlite_url: str, fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings(sqlite_url, REDIS_URL, "unit:", visibility_timeout=10,
                         task_time_limit=8)


@pytest.fixture
def sweeper(settings: Settings) -> Iterator[Sweeper]:
    found = Sweeper(settings)
    yield found
    found.ledger.client.close()


def published(sweeper: Sweeper, *refund_ids: str) -> dict[str, RawDelivery]:
    found = {}
    for refund_id in refund_ids:
        raw = delivery(camel_event(refund_id=refund_id), delivery_id=f"d-{refund_id}")
        found[publish(make_celery(sweeper.settings), raw)] = raw
    return found


def age(sweeper: Sweeper, message_ids: list[str], seconds: float = 60) -> None:
    sweeper.ledger.client.zadd(sweeper.ledger.recorded_at,
                               dict.fromkeys(message_ids, time.time() - seconds))


def lose(sweeper: Sweeper, message_id: str) -> str:
    """Off the queue as a worker killed inside kombu's fetch window loses it."""
    client, key = sweeper.ledger.client, sweeper.queue_key
    for raw in client.lrange(key, 0, -1):
        if json.loads(raw)["headers"]["id"] == message_id:
            client.lrem(key, 1, raw)
            return str(raw)
    raise AssertionError(f"{message_id} is not on the queue")


def queued_ids(settings: Settings) -> list[str]:
    return [envelope["headers"]["id"] for envelope in envelopes(settings)]


def test_a_lost_old_message_is_put_back_once_under_its_id(
    settings: Settings, sweeper: Sweeper, caplog: pytest.LogCaptureFixture
) -> None:
    sent = published(sweeper, "1", "2", "3")
    lost = list(sent)[1]
    age(sweeper, list(sent))
    lose(sweeper, lost)
    assert sweeper.sweep() == 1
    assert sorted(queued_ids(settings)) == sorted(sent)
    assert ledger_entries(settings) == sent
    assert "delivery republished" in caplog.text and "d-2" in caplog.text
    assert sweeper.sweep() == 0  # its entry is young again


def test_a_young_entry_is_left_alone(settings: Settings, sweeper: Sweeper) -> None:
    [message_id] = published(sweeper, "1")
    lose(sweeper, message_id)
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []


def test_a_message_a_worker_holds_is_left_alone(settings: Settings, sweeper: Sweeper) -> None:
    [message_id] = published(sweeper, "1")
    age(sweeper, [message_id])
    raw = lose(sweeper, message_id)
    # kombu's record of a fetched message: [message, exchange, routing key]
    sweeper.ledger.client.hset(sweeper.unacked_key, "tag-1",
                               json.dumps([json.loads(raw), "", settings.queue]))
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []
    assert list(ledger_entries(settings)) == [message_id]


def test_a_settled_delivery_is_forgotten_not_put_back(
    settings: Settings, sweeper: Sweeper
) -> None:
    # given a worker that committed the effect and died before clearing the entry
    [(message_id, raw)] = published(sweeper, "1").items()
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    apply(settings, raw)
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []
    assert ledger_entries(settings) == {}


def test_a_dead_letter_after_the_publish_settles_it(settings: Settings, sweeper: Sweeper) -> None:
    [(message_id, raw)] = published(sweeper, "1").items()
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    with session_factory(settings).begin() as session:
        dead_letters.record(raw, reason="retries_exhausted", error="x", session=session)
    assert sweeper.sweep() == 0
    assert ledger_entries(settings) == {}


def test_another_sweeper_holding_the_lock_sweeps_alone(
    settings: Settings, sweeper: Sweeper, fake_client: redis.Redis
) -> None:
    [message_id] = published(sweeper, "1")
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    other = fake_client.lock(sweeper.ledger.sweep_lock_name, timeout=30)
    assert other.acquire(blocking=False)
    assert sweeper.sweep() == 0
    other.release()
    assert sweeper.sweep() == 1


def test_a_sweep_that_outlasts_its_lock_puts_back_nothing(
    settings: Settings, sweeper: Sweeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    [message_id] = published(sweeper, "1")
    age(sweeper, [message_id])
    lose(sweeper, message_id)

    def slow_database(*_args: object, **_kwargs: object) -> set[str]:
        sweeper.ledger.client.delete(sweeper.ledger.sweep_lock_name)  # the lock expired
        return set()

    monkeypatch.setattr(sweeper_module, "settled_copies", slow_database)
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []
    assert list(ledger_entries(settings)) == [message_id]


def test_a_long_queue_defers_the_sweep(
    settings: Settings, sweeper: Sweeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "MAX_SCANNED_QUEUE", 2)
    sent = published(sweeper, "1", "2", "3", "4")
    age(sweeper, list(sent))
    lose(sweeper, list(sent)[0])
    assert sweeper.sweep() == 0  # 3 still queued: the scan returns nil
    lose(sweeper, list(sent)[1])
    assert sweeper.sweep() == 2


def test_foreign_messages_and_bad_entries_do_not_stop_the_sweep(
    settings: Settings, sweeper: Sweeper
) -> None:
    [message_id] = published(sweeper, "1")
    lose(sweeper, message_id)
    client = sweeper.ledger.client
    # the Lua scan skips what is no kombu message; an entry that is no delivery is dropped
    client.lpush(sweeper.queue_key, "not json", json.dumps({"headers": {}}), "[1, 2]")
    client.hset(sweeper.unacked_key, mapping={"tag-1": "[]", "tag-2": "{oops"})
    client.hset(sweeper.ledger.entries, "broken", "{}")
    age(sweeper, [message_id, "broken", "orphan"])
    assert sweeper.sweep() == 1
    assert message_id in client.lrange(sweeper.queue_key, 0, 0)[0]
    assert client.zrange(sweeper.ledger.recorded_at, 0, -1) == [message_id]
    assert list(ledger_entries(settings)) == [message_id]


def test_another_queue_s_ledger_is_not_swept(settings: Settings, sweeper: Sweeper) -> None:
    other = Sweeper(replace(settings, queue=f"{settings.queue}-other"))
    sent = published(other, "1", "2")
    age(other, list(sent))
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == [] and ledger_entries(settings) == {}
    assert ledger_entries(other.settings) == sent
    other.ledger.client.close()
