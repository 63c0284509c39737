"""The worker's side of the transport (broker.consume) against a real Redis: one fetch takes as
many messages as the prefetch window allows and records them all in kombu's `unacked`; acks
inside Celery's event loop leave `unacked` together at the loop's tick; a message put back
is not lost; and kombu's internals it relies on still behave as it assumes."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu.asynchronous import Hub

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


def one_fetch(connection: Connection, queue: Queue, queued: int, prefetch: int | None,
              on_message: Callable[[Any, Message], None] | None = None,
              ) -> tuple[Consumer, list[Message]]:
    """`queued` messages published, then one fetch by a consumer with that prefetch window (or
    none): the consumer and the messages it received, each also handed to `on_message`."""
    publish(connection, queue, queued)
    received: list[Message] = []

    def receive(body: Any, message: Message) -> None:
        received.append(message)
        if on_message:
            on_message(body, message)

    channel = connection.channel()
    if prefetch is not None:
        channel.basic_qos(0, prefetch, False)
    consumer = Consumer(channel, [queue], callbacks=[receive])
    consumer.consume()
    connection.drain_events(timeout=2)
    return consumer, received


@contextmanager
def event_loop(connection: Connection) -> Iterator[Hub]:
    """Celery's event loop as the worker runs it: the transport registered with it, and this
    thread its loop's."""
    hub = Hub()
    hub._loop_thread = threading.get_ident()
    connection.transport.register_with_event_loop(connection.connection, hub)
    try:
        yield hub
    finally:
        hub.close()


def test_one_fetch_takes_the_prefetch_window_and_records_it_unacked(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # one BRPOP's answer: that message and 19 more, the window's worth, in order
    consumer, received = one_fetch(connection, queue, queued=50, prefetch=20)
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
    consumer, received = one_fetch(connection, queue, queued=10, prefetch=10)
    r = raw(redis_url)
    with event_loop(connection) as hub:
        for message in received:
            message.ack()
        # acked for kombu at once (the window is free again), still in Redis until the tick
        assert consumer.channel.qos.can_consume_max_estimate() == 10
        assert r.hlen(key_prefix + "unacked") == 10
        for tick in list(hub.on_tick):
            tick()
        assert r.hlen(key_prefix + "unacked") == 0
        assert r.zcard(key_prefix + "unacked_index") == 0
        # the tick unhooks itself once the acks are sent
        assert consumer.channel.qos._send_acks not in hub.on_tick


def test_acks_still_unsent_when_the_channel_closes_are_sent_first(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    consumer, received = one_fetch(connection, queue, queued=5, prefetch=5)
    with event_loop(connection):
        for message in received[:3]:
            message.ack()
    consumer.channel.close()  # the two unacked go back to the queue, the three acked do not
    r = raw(redis_url)
    assert r.hlen(key_prefix + "unacked") == 0
    assert r.llen(key_prefix + queue.name) == 2


def test_a_message_put_back_during_a_fetch_is_not_lost(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # Celery rejects some messages as they arrive (unknown task, undecodable): a reject with
    # requeue reads the `unacked` entry, which the fetch's pipeline must have written by then
    def put_back_the_third(body: Any, message: Message) -> None:
        if body["n"] == 2:
            message.requeue()

    _, received = one_fetch(connection, queue, queued=5, prefetch=5,
                            on_message=put_back_the_third)
    r = raw(redis_url)
    assert [m.decode()["n"] for m in received] == [0, 1, 2, 3, 4]
    assert r.llen(key_prefix + queue.name) == 1  # the third, back on the queue
    assert r.hlen(key_prefix + "unacked") == 4


def test_a_consumer_without_a_prefetch_window_takes_one_message_per_fetch(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # a control command's client reads its replies so: no window, so no more than kombu takes
    _, received = one_fetch(connection, queue, queued=3, prefetch=None)
    assert len(received) == 1
    assert raw(redis_url).llen(key_prefix + queue.name) == 2


def test_messages_taken_after_one_celery_could_not_take_go_back_in_order(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    def refuse_the_second(body: Any, _message: Message) -> None:
        if body["n"] == 1:
            raise RuntimeError("the strategy failed")

    with pytest.raises(RuntimeError):
        one_fetch(connection, queue, queued=6, prefetch=10, on_message=refuse_the_second)
    r = raw(redis_url)
    # the four taken after it are back at the head of the list, still in order
    assert [raw_message(m)["n"] for m in reversed(r.lrange(key_prefix + queue.name, 0, -1))] \
        == [2, 3, 4, 5]
    assert r.hlen(key_prefix + "unacked") == 2  # the two Celery received, recorded


def test_an_ack_while_a_fetch_delivers_goes_after_its_append(
    connection: Connection, queue: Queue, redis_url: str, key_prefix: str
) -> None:
    # Celery acks a revoked or expired task as it arrives, inside the fetch
    one_fetch(connection, queue, queued=4, prefetch=10, on_message=lambda _b, m: m.ack())
    assert raw(redis_url).hlen(key_prefix + "unacked") == 0


def raw_message(queued: bytes) -> Any:
    """The body of a message as kombu's Redis transport queues it (base64 in a JSON envelope)."""
    return json.loads(base64.b64decode(json.loads(queued)["body"]))
