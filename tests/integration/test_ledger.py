"""The ledger and its sweeper against real Redis and both databases: what the sweeper publishes
again, and what it leaves alone. No worker runs here; the queue is read back as Redis holds it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis
from conftest import make_settings
from deliveries import apply, delivery
from payloads import camel_event
from queued_messages import envelopes, ledger_entries
from sqlalchemy import update

from broker.app import make_celery
from broker.publish import publish
from refunds import dead_letters
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter
from refunds.settings import Settings
from worker import sweeper as sweeper_module
from worker.sweeper import Sweeper

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(db_url: str, redis_url: str, key_prefix: str) -> Settings:
    return make_settings(db_url, redis_url, key_prefix, visibility_timeout=10,
                         task_time_limit=8)


@pytest.fixture
def sweeper(settings: Settings) -> Iterator[Sweeper]:
    found = Sweeper(settings)
    yield found
    found.ledger.client.close()


def published(sweeper: Sweeper, *refund_ids: str) -> dict[str, RawDelivery]:
    """Deliveries published as the ingest publishes them, by task message id."""
    found = {}
    for refund_id in refund_ids:
        raw = delivery(camel_event(refund_id=refund_id), delivery_id=f"d-{refund_id}")
        found[publish(make_celery(sweeper.settings), raw)] = raw
    return found


def age(sweeper: Sweeper, message_ids: list[str], seconds: float = 60) -> None:
    sweeper.ledger.client.zadd(sweeper.ledger.recorded_at,
                               dict.fromkeys(message_ids, time.time() - seconds))


def lose(sweeper: Sweeper, message_id: str) -> str:
    """Take a message off the queue the way a worker killed inside kombu's fetch window loses
    it: popped, never recorded as unacked. Returns the raw message."""
    client, key = sweeper.ledger.client, sweeper.queue_key
    for raw in client.lrange(key, 0, -1):
        if json.loads(raw)["headers"]["id"] == message_id:
            client.lrem(key, 1, raw)
            return str(raw)
    raise AssertionError(f"{message_id} is not on the queue")


def dead_letter(settings: Settings, raw: RawDelivery, seconds_ago: float) -> None:
    """The delivery's dead letter, as last failed that long ago."""
    with session_factory(settings).begin() as session:
        dead_letters.record(raw, reason="retries_exhausted", error="x", session=session)
        session.execute(update(DeadLetter).values(
            last_failed_at=datetime.now(UTC) - timedelta(seconds=seconds_ago)))


def queued_ids(settings: Settings) -> list[str]:
    return [envelope["headers"]["id"] for envelope in envelopes(settings)]


def test_publish_records_each_message_in_the_ledger(settings: Settings, sweeper: Sweeper) -> None:
    sent = published(sweeper, "1", "2")
    assert sorted(queued_ids(settings)) == sorted(sent)
    assert ledger_entries(settings) == sent
    sweeper.ledger.settle(list(sent)[:1])
    assert list(ledger_entries(settings)) == list(sent)[1:]


def test_a_lost_message_is_published_again_under_its_id(
    settings: Settings, sweeper: Sweeper, caplog: pytest.LogCaptureFixture
) -> None:
    sent = published(sweeper, "1", "2", "3")
    lost = list(sent)[1]
    age(sweeper, list(sent))
    lose(sweeper, lost)
    assert sweeper.sweep() == 1
    assert sorted(queued_ids(settings)) == sorted(sent)
    assert "delivery republished" in caplog.text and "d-2" in caplog.text
    assert sweeper.sweep() == 0  # its entry is young again: nothing twice


def test_a_young_entry_is_left_alone(settings: Settings, sweeper: Sweeper) -> None:
    [message_id] = published(sweeper, "1")
    lose(sweeper, message_id)  # published less than a visibility timeout ago
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []


def test_a_message_a_worker_holds_is_left_alone(settings: Settings, sweeper: Sweeper) -> None:
    [message_id] = published(sweeper, "1")
    age(sweeper, [message_id])
    raw = lose(sweeper, message_id)
    # kombu's record of a message a worker fetched: [message, exchange, routing key]
    sweeper.ledger.client.hset(sweeper.unacked_key, "tag-1",
                               json.dumps([json.loads(raw), "", settings.queue]))
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []
    assert list(ledger_entries(settings)) == [message_id]


def test_a_settled_delivery_is_forgotten_not_published(
    settings: Settings, sweeper: Sweeper
) -> None:
    # given a worker that committed the effect and died before clearing the entry
    sent = published(sweeper, "1")
    [(message_id, raw)] = sent.items()
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    apply(settings, raw)
    assert sweeper.sweep() == 0
    assert queued_ids(settings) == []
    assert ledger_entries(settings) == {}


def test_a_dead_letter_settles_its_delivery_until_it_is_requeued(
    settings: Settings, sweeper: Sweeper
) -> None:
    [(message_id, raw)] = published(sweeper, "1").items()
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    with session_factory(settings).begin() as session:  # dead-lettered after that publish
        dead_letters.record(raw, reason="retries_exhausted", error="x", session=session)
    assert sweeper.sweep() == 0
    assert ledger_entries(settings) == {}
    # requeued, and that message lost too: the letter waits on it, so it is published again
    with session_factory(settings)() as session:
        [letter] = dead_letters.find(session=session, state=dead_letters.DEAD)
        letter_id = letter.id
    app = make_celery(settings)
    result = dead_letters.requeue(session_factory(settings), lambda d: publish(app, d),
                                  ids=[letter_id])
    assert result.requeued == [letter_id]
    [requeue_id] = ledger_entries(settings)
    age(sweeper, [requeue_id])
    lose(sweeper, requeue_id)
    assert sweeper.sweep() == 1
    assert queued_ids(settings) == [requeue_id]


def test_an_older_dead_letter_does_not_settle_a_later_copy(
    settings: Settings, sweeper: Sweeper
) -> None:
    # Genstore sends again a delivery dead-lettered long ago (our 202 never reached it),
    # and that copy is lost: it could still apply, so it is published again
    raw = delivery(camel_event(refund_id="1"), delivery_id="d-1")
    dead_letter(settings, raw, seconds_ago=3600)
    message_id = publish(make_celery(settings), raw)
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    assert sweeper.sweep() == 1
    assert queued_ids(settings) == [message_id]


def test_each_copy_of_a_delivery_is_judged_by_its_own_publish_time(
    settings: Settings, sweeper: Sweeper
) -> None:
    # two copies of one delivery, both lost; a dead letter written between their publishes
    raw = delivery(camel_event(refund_id="1"), delivery_id="d-1")
    earlier, later = publish(make_celery(settings), raw), publish(make_celery(settings), raw)
    age(sweeper, [earlier], seconds=120)
    age(sweeper, [later], seconds=60)
    lose(sweeper, earlier)
    lose(sweeper, later)
    dead_letter(settings, raw, seconds_ago=90)
    assert sweeper.sweep() == 1
    assert queued_ids(settings) == [later]
    assert list(ledger_entries(settings)) == [later]


def test_a_sweep_that_outlasts_its_lock_publishes_nothing(
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
    assert list(ledger_entries(settings)) == [message_id]  # for the next sweep


def test_only_one_sweeper_at_a_time(settings: Settings, sweeper: Sweeper) -> None:
    [message_id] = published(sweeper, "1")
    age(sweeper, [message_id])
    lose(sweeper, message_id)
    other = redis.Redis.from_url(settings.redis_url).lock(sweeper.ledger.sweep_lock_name,
                                                           timeout=30)
    assert other.acquire(blocking=False)
    try:
        assert sweeper.sweep() == 0
    finally:
        other.release()
    assert sweeper.sweep() == 1


def test_a_long_queue_defers_the_sweep(
    settings: Settings, sweeper: Sweeper, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "MAX_SCANNED_QUEUE", 2)
    sent = published(sweeper, "1", "2", "3", "4")
    age(sweeper, list(sent))
    lose(sweeper, list(sent)[0])
    assert sweeper.sweep() == 0  # 3 still queued: its messages are old because they wait
    lose(sweeper, list(sent)[1])
    assert sweeper.sweep() == 2


def test_foreign_queue_messages_and_bad_entries_do_not_stop_the_sweep(
    settings: Settings, sweeper: Sweeper
) -> None:
    [message_id] = published(sweeper, "1")
    lose(sweeper, message_id)
    client = sweeper.ledger.client
    client.lpush(sweeper.queue_key, "not json", json.dumps({"headers": {}}))
    client.hset(sweeper.unacked_key, "tag-1", "[]")
    client.hset(sweeper.ledger.entries, "broken", "{}")
    age(sweeper, [message_id, "broken", "orphan"])  # "orphan": a time without an entry
    assert sweeper.sweep() == 1
    assert message_id in client.lrange(sweeper.queue_key, 0, 0)[0]
    assert client.zrange(sweeper.ledger.recorded_at, 0, -1) == [message_id]
    assert list(ledger_entries(settings)) == [message_id]


def test_finding_4_ledger_scoped_by_queue(settings: Settings, sweeper: Sweeper) -> None:
    # given a second sink on the same Redis and key prefix, told apart by its queue, whose
    # workers are down: its deliveries wait on its queue past the visibility timeout
    other = Sweeper(replace(settings, queue=f"{settings.queue}-other"))
    sent = published(other, "1", "2")
    age(other, list(sent))
    # when this sink's sweeper runs
    put_back = sweeper.sweep()
    # then it neither sees nor moves the other sink's deliveries
    assert put_back == 0
    assert queued_ids(settings) == [] and ledger_entries(settings) == {}
    assert sorted(queued_ids(other.settings)) == sorted(sent)
    assert ledger_entries(other.settings) == sent
    other.ledger.client.close()
