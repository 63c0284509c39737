"""The prepared task message (`broker.envelope`, published by `broker.publish`) against the one
Celery and kombu build (`app.send_task`, through the transport's `Channel._put`): the same
delivery published both ways must queue the same message but for its generated ids, read back
through kombu as a worker reads it (headers, properties, delivery info, decoded body). A
Celery or kombu upgrade that changes its message fails here."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
import redis
from conftest import make_settings
from deliveries import delivery
from fake_redis import REDIS_URL
from payloads import camel_event

from broker.app import TASK_NAME, make_celery
from broker.envelope import display
from broker.ledger import Ledger
from broker.publish import publish
from broker.wire import delivery_of, to_wire
from refunds.delivery import RawDelivery
from refunds.settings import Settings

pytestmark = pytest.mark.unit

# what each publish generates afresh
GENERATED = {("headers", "id"), ("headers", "root_id"), ("properties", "correlation_id"),
             ("properties", "delivery_tag")}


@pytest.fixture
def settings(fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings("sqlite://", REDIS_URL, "golden:", visibility_timeout=10,
                         task_time_limit=8)


@pytest.fixture
def raw() -> RawDelivery:
    return delivery(camel_event(refund_id="7"), delivery_id="d-7", shop="shop-é")


def both_ways(settings: Settings, raw: RawDelivery,
              client: redis.Redis) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task message id, the message as queued): first through `send_task`, then prepared."""
    app = make_celery(settings)
    sent = app.send_task(TASK_NAME, args=[to_wire(raw)], retry=False, **display(raw))
    prepared = publish(app, raw)
    queue = settings.redis_key_prefix + settings.queue
    queued = [json.loads(message) for message in reversed(client.lrange(queue, 0, -1))]
    assert len(queued) == 2
    yield str(sent.id), queued[0]
    yield prepared, queued[1]


def without_generated(message: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(message))
    for part, name in GENERATED:
        copy[part].pop(name)
    copy["body"] = json.loads(delivery_body(message))
    return copy


def delivery_body(message: dict[str, Any]) -> bytes:
    return base64.b64decode(message["body"])


def test_the_prepared_message_is_the_one_send_task_builds(
    settings: Settings, raw: RawDelivery, fake_client: redis.Redis
) -> None:
    # given the same delivery published through Celery and prepared
    (celery_id, by_celery), (prepared_id, prepared) = both_ways(settings, raw, fake_client)
    # then the messages are equal but for the ids each publish generates
    assert without_generated(prepared) == without_generated(by_celery)
    # and those are fresh and consistent the way Celery makes them
    assert prepared["headers"]["id"] == prepared_id != celery_id
    assert prepared["headers"]["root_id"] == prepared_id
    assert prepared["properties"]["correlation_id"] == prepared_id
    assert prepared["properties"]["delivery_tag"] != by_celery["properties"]["delivery_tag"]
    # and the body, still base64 of the same JSON, holds the same delivery
    assert delivery_body(prepared) == delivery_body(by_celery)
    assert delivery_of(json.dumps(prepared)) == raw


def test_a_worker_reads_the_same_task_from_both(
    settings: Settings, raw: RawDelivery, fake_client: redis.Redis
) -> None:
    # given both messages on the queue
    ids = [message_id for message_id, _ in both_ways(settings, raw, fake_client)]
    # when a kombu channel of the app takes them as a worker's consumer does
    app = make_celery(settings)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        taken = [channel.basic_get(settings.queue, no_ack=True) for _ in ids]
    by_celery, prepared = taken
    # then headers, properties, routing and the decoded task arguments agree
    for message_id, message in zip(ids, taken, strict=True):
        assert message.headers["id"] == message_id
        assert message.headers["task"] == TASK_NAME
        assert message.headers["retries"] == 0
        assert message.headers["origin"]
        assert message.content_type == "application/json"
    for part in ("headers", "properties"):
        ours = {key: value for key, value in getattr(prepared, part).items()
                if (part, key) not in GENERATED}
        theirs = {key: value for key, value in getattr(by_celery, part).items()
                  if (part, key) not in GENERATED}
        assert ours == theirs
    assert prepared.delivery_info == by_celery.delivery_info
    assert prepared.delivery_info["routing_key"] == settings.queue
    assert prepared.decode() == by_celery.decode()
    args, kwargs, embed = prepared.decode()
    assert args == [to_wire(raw)] and kwargs == {}
    assert embed == {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_the_ledger_holds_the_prepared_message_as_queued(
    settings: Settings, raw: RawDelivery, fake_client: redis.Redis
) -> None:
    message_id = publish(make_celery(settings), raw)
    ledger = Ledger(settings)
    queued = fake_client.lrange(settings.redis_key_prefix + settings.queue, 0, -1)
    assert fake_client.hget(ledger.entries, message_id) == queued[0]
    assert ledger.size() == 1
    assert all(key.startswith("golden:") for key in fake_client.keys("*"))


def test_published_from_inside_a_task_it_descends_from_it_as_with_send_task(
    settings: Settings, raw: RawDelivery, fake_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a running task (a reconcile run inside a worker)
    parent = SimpleNamespace(request=SimpleNamespace(id="parent-1", root_id="root-1"),
                             add_trail=lambda _result: None)
    monkeypatch.setattr(type(make_celery(settings)), "current_worker_task",
                        property(lambda _app: parent))
    # when a delivery is published both ways
    (_, by_celery), (_, prepared) = both_ways(settings, raw, fake_client)
    # then both carry the task's root and parent
    for message in (by_celery, prepared):
        assert message["headers"]["root_id"] == "root-1"
        assert message["headers"]["parent_id"] == "parent-1"


def test_a_publish_while_redis_is_down_raises_and_a_later_one_goes_through(
    settings: Settings, raw: RawDelivery, fake_server: fakeredis.FakeServer,
    fake_client: redis.Redis,
) -> None:
    # given an app whose publisher has published once
    app = make_celery(settings)
    publish(app, raw)
    # when Redis goes away, the publish raises (the ingest spools)
    fake_server.connected = False
    with pytest.raises(redis.ConnectionError):
        publish(app, raw)
    # and when it is back, the same publisher queues again
    fake_server.connected = True
    publish(app, raw)
    assert fake_client.llen(settings.redis_key_prefix + settings.queue) == 2


def test_publishes_from_many_threads_each_queue_one_message_with_its_entry(
    settings: Settings, fake_client: redis.Redis
) -> None:
    # given one app's publisher used by many request threads at once (gthread)
    app = make_celery(settings)
    raws = [delivery(camel_event(refund_id=str(n)), delivery_id=f"d-{n}") for n in range(40)]
    ids: dict[str, str] = {}

    def send(raw: RawDelivery) -> None:
        ids[raw.delivery_id] = publish(app, raw)

    threads = [threading.Thread(target=send, args=(raw,)) for raw in raws]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # then every delivery is queued once, under the id its publish returned, with its entry
    queue = settings.redis_key_prefix + settings.queue
    queued = {json.loads(message)["headers"]["id"]: delivery_of(message)
              for message in fake_client.lrange(queue, 0, -1)}
    assert len(queued) == 40
    assert {ids[raw.delivery_id]: raw for raw in raws} == queued
    assert Ledger(settings).size() == 40
