"""The worker's side of the transport (broker.consume) against a real Redis: one fetch takes as
many messages as the prefetch window allows and records them all in kombu's `unacked`; acks
inside Celery's event loop leave `unacked` together at the loop's tick; a message put back
is not lost; and kombu's internals it relies on still behave as it assumes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu.asynchronous import Hub, set_event_loop

from broker import consume


@pytest.fixture
def connection(redis_url: str, key_prefix: str) -> Iterator[Connection]:
    with Connection(redis_url, transport=consume.Transport,
                    transport_options={"global_keyprefix": key_prefix}) as conn:
        yield conn


@pytest.fixture
def queue() -> Queue:
    name = f"consume-{uuid.uuid4().hex[:8]}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def publish(connection: Connection, queue: Queue, count: int) -> None:
    producer = Producer(connection.channel())
    for number in range(count):
        producer.publish({"n": number}, exchange=queue.exchange, routing_key=queue.routing_key,
                         declare=[queue])


def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def receive(connection: Connection, queue: Queue, prefetch: int,
            received: list[Message]) -> Consumer:
    channel = connection.channel()
    channel.basic_qos(0, prefetch, False)
    consumer = Consumer(channel, [queue], callbacks=[lambda _body, m: received.append(m)])
    consumer.consume()
    return consumer


def test_one_fetch_takes_the_prefetch_window_and_records_it_unacked(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    publish(connection, queue, 50)
    received: list[Message] = []
    consumer = receive(connection, queue, 20, received)
    # one BRPOP's answer: that message and 19 more, the window's worth, in order
    connection.drain_events(timeout=2)
    assert [m.decode()["n"] for m in received] == list(range(20))
    r = raw(redis_url)
    assert r.llen(key_prefix + queue.name) == 30
    assert r.hlen(key_prefix + "unacked") == 20
    assert r.zcard(key_prefix + "unacked_index") == 20
    # the window is full: nothing more is taken until something is acked
    assert consumer.channel.qos.can_consume_max_estimate() == 0


def test_acks_in_the_event_loop_leave_unacked_at_its_tick(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    publish(connection, queue, 10)
    received: list[Message] = []
    consumer = receive(connection, queue, 10, received)
    connection.drain_events(timeout=2)
    r = raw(redis_url)
    hub = Hub()
    set_event_loop(hub)
    try:
        for message in received:
            message.ack()
        # acked for kombu at once (the window is free again), still in Redis until the tick
        assert consumer.channel.qos.can_consume_max_estimate() == 10
        assert r.hlen(key_prefix + "unacked") == 10
        for tick in list(hub.on_tick):
            tick()
        assert r.hlen(key_prefix + "unacked") == 0
        assert r.zcard(key_prefix + "unacked_index") == 0
        assert not hub.on_tick  # the tick unhooks itself once the acks are sent
    finally:
        set_event_loop(None)
        hub.close()


def test_acks_still_unsent_when_the_channel_closes_are_sent_first(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    publish(connection, queue, 5)
    received: list[Message] = []
    consumer = receive(connection, queue, 5, received)
    connection.drain_events(timeout=2)
    hub = Hub()
    set_event_loop(hub)
    try:
        for message in received[:3]:
            message.ack()
    finally:
        set_event_loop(None)
        hub.close()
    consumer.channel.close()  # the two unacked go back to the queue, the three acked do not
    r = raw(redis_url)
    assert r.hlen(key_prefix + "unacked") == 0
    assert r.llen(key_prefix + queue.name) == 2


def test_a_message_put_back_during_a_fetch_is_not_lost(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # Celery rejects some messages as they arrive (unknown task, undecodable): a reject with
    # requeue reads the `unacked` entry, which the fetch's pipeline must have written by then
    publish(connection, queue, 5)
    seen: list[int] = []

    def put_back_the_third(body: Any, message: Message) -> None:
        seen.append(body["n"])
        if body["n"] == 2 and seen.count(2) == 1:
            message.requeue()

    channel = connection.channel()
    channel.basic_qos(0, 5, False)
    Consumer(channel, [queue], callbacks=[put_back_the_third]).consume()
    connection.drain_events(timeout=2)
    r = raw(redis_url)
    assert seen == [0, 1, 2, 3, 4]
    assert r.llen(key_prefix + queue.name) == 1  # the third, back on the queue
    assert r.hlen(key_prefix + "unacked") == 4


def test_a_consumer_without_a_prefetch_window_takes_one_message_per_fetch(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # a control command's client reads its replies so: no window, so no more than kombu takes
    publish(connection, queue, 3)
    received: list[Message] = []
    Consumer(connection.channel(), [queue],
             callbacks=[lambda _body, m: received.append(m)]).consume()
    connection.drain_events(timeout=2)
    assert len(received) == 1
    assert raw(redis_url).llen(key_prefix + queue.name) == 2
