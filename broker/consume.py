"""The worker's side of kombu's Redis transport, with fewer round trips per message.

kombu takes one message per `BRPOP`, records each in its `unacked` hash in a round trip of its
own, and removes each from there on its ack in another: three round trips per message in the
worker's main process, which limited how fast the workers apply (docs/performance.md).
Here, a `BRPOP` that returns a message is followed by one script that takes up to what the
prefetch window still allows; the messages taken together are recorded in `unacked` in one
pipeline; and the acks of one turn of Celery's event loop (a batch's) go in one pipeline,
sent at the loop's tick.

What this changes in kombu's guarantees: nothing the ledger (`broker.ledger`) does not
already cover. A message is off the list before it is in `unacked` in kombu too (the window
of its `BRPOP`); here the window holds up to `FETCH_MAX` messages, from the script until
the fetch's pipeline runs, after Celery has received them all. A worker whose main process
dies inside it, or whose pipeline fails (the broker connection lost), leaves them in neither
the queue nor `unacked`, and the ledger's sweeper publishes them again once they are older
than the visibility timeout (the fault runner's kill storm); a copy Celery still held is then
a duplicate the dedupe absorbs. When Celery's callback raises for one message, those taken
after it go back to the head of their lists. An ack not yet sent when the main
process dies leaves its committed message in `unacked`: it comes back after the visibility
timeout, a duplicate the dedupe absorbs.

kombu's internals used here (kombu pinned below 6, tested by tests/integration/test_consume.py and
the worker integration tests): `Channel._brpop_read`, `active_queues`, `priority_steps`,
`_q_for_pri`, `global_keyprefix`, `conn_or_acquire`, `connection._deliver`, `QoS.append`,
`QoS.ack`, `QoS.reject`, `QoS.restore_unacked_once`, `QoS._remove_from_indices`,
`unacked_key`, `unacked_index_key`, the `[raw message, exchange, routing key]` form of an
`unacked` entry, `Channel._closing`, `Transport.register_with_event_loop`, and the event
loop's `on_tick` and `_loop_thread`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from broker import transport

log = logging.getLogger("refund_sink.worker")

# The most messages one fetch takes after its BRPOP (the prefetch window bounds it too).
FETCH_MAX = 100
# KEYS: a queue's lists in kombu's priority order; ARGV[1]: how many messages at most.
# Returns the index into KEYS and the message of each, flat: {i, message, i, message, ...}.
TAKE = """
local taken, limit = {}, tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  while #taken < 2 * limit do
    local message = redis.call('RPOP', key)
    if not message then break end
    taken[#taken + 1] = i
    taken[#taken + 1] = message
  end
end
return taken
"""


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS whose `unacked` writes share round trips: the appends of one fetch
    go in one pipeline, and the acks of one turn of the worker's event loop in another."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._appending: Any = None  # the fetch's pipeline, while it delivers
        self._acked: list[str] = []  # acked, still in `unacked` until the loop's tick
        self._ticking: Any = None  # the loop whose tick sends them

    @contextmanager
    def appends_together(self) -> Iterator[None]:
        """Every `append` inside goes to one pipeline, sent when the block ends (also when it
        raises: what was taken is recorded)."""
        with self.channel.conn_or_acquire() as client:
            self._appending = client.pipeline(transaction=False)
            try:
                yield
            finally:
                pipe, self._appending = self._appending, None
                if len(pipe):
                    pipe.execute()

    def append(self, message: Any, delivery_tag: str) -> None:
        if self._appending is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        self._appending.zadd(self.unacked_index_key, {delivery_tag: time()})
        self._appending.hset(self.unacked_key, delivery_tag, entry)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        """On the thread of Celery's event loop, the removal from `unacked` waits for the
        loop's tick, so the acks a turn of the loop runs (a batch's) share one round trip. Its
        effect is committed already: if the worker dies first, the message comes back after
        the visibility timeout as a duplicate the dedupe absorbs. An ack while a fetch still
        delivers (Celery acks a revoked task as it arrives) goes after that fetch's appends."""
        if self._appending is not None:
            self._remove_from_indices(delivery_tag, self._appending)
            virtual.QoS.ack(self, delivery_tag)
            return
        hub = self._loop()
        if hub is None:
            super().ack(delivery_tag)
            return
        if not self._acked:
            hub.on_tick.add(self._send_acks)
            self._ticking = hub
        self._acked.append(delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

    def _loop(self) -> Any:
        """The worker's event loop, when this is its thread (a thread pool acks from others).
        Kept by the transport: Celery clears kombu's global loop when it resets the loop
        after a broker error, but registers the transport with it again."""
        hub = getattr(self.channel.connection, "hub", None)
        if hub is None or getattr(hub, "_loop_thread", None) != threading.get_ident():
            return None
        return hub

    def _send_acks(self) -> None:
        tags, self._acked = self._acked, []
        if self._ticking is not None:
            self._ticking.on_tick.discard(self._send_acks)
            self._ticking = None
        if not tags:
            return
        try:
            with self.pipe_or_acquire() as pipe:
                for tag in tags:
                    self._remove_from_indices(tag, pipe)
                pipe.execute()
        except self.channel.connection_errors as error:
            log.warning("%d acknowledgements not sent (%s): their messages come back after "
                        "the visibility timeout, as duplicates", len(tags), type(error).__name__)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Putting a message back reads its `unacked` entry, which must be written by then."""
        if self._appending is not None and len(self._appending):
            self._appending.execute()  # the fetch appends on in the emptied pipeline
        super().reject(delivery_tag, requeue=requeue)

    def restore_unacked_once(self, stderr: Any = None) -> Any:
        """The channel closes: what was acked leaves `unacked` first, so it is not restored."""
        self._send_acks()
        return super().restore_unacked_once(stderr)


class Channel(transport.Channel):
    """The ledger's channel whose `BRPOP`, once it returned a message, takes more."""

    QoS = QoS

    def _brpop_read(self, **options: Any) -> bool:
        with self.qos.appends_together():
            delivered: bool = super()._brpop_read(**options)
            self._take_more()
        return delivered

    def _take_more(self) -> None:
        """Only within a prefetch window (a worker's): a consumer without one (a control
        command's reply queue) takes one message per `BRPOP`, as in kombu."""
        window = self.qos.can_consume_max_estimate()  # None without a prefetch window
        limit = min(FETCH_MAX, window or 0)
        if limit <= 0 or self._closing:
            return
        lists = [(queue, self._q_for_pri(queue, priority))
                 for priority in self.priority_steps for queue in self.active_queues]
        if not lists:
            return
        prefix = self.global_keyprefix or ""  # EVAL's keys are not prefixed by kombu's client
        with self.conn_or_acquire() as client:
            flat = client.eval(TAKE, len(lists), *(prefix + key for _, key in lists), limit)
        taken = [(lists[int(index) - 1], message)
                 for index, message in zip(flat[::2], flat[1::2], strict=True)]
        for position, ((queue, _key), message) in enumerate(taken):
            try:
                self.connection._deliver(loads(bytes_to_str(message)), queue)
            except BaseException:
                self._put_back(taken[position + 1:])
                raise

    def _put_back(self, taken: list[tuple[tuple[str, str], bytes]]) -> None:
        """Messages taken but not delivered go back to the head of their lists, in order."""
        if not taken:
            return
        with self.conn_or_acquire() as client:  # kombu's client prefixes RPUSH's key
            pipe = client.pipeline(transaction=False)
            for (_queue, key), message in reversed(taken):
                pipe.rpush(key, message)
            pipe.execute()


class SentinelChannel(Channel, transport.SentinelChannel):
    """The same through Sentinel: this class, ours above, the ledger's Sentinel channel."""


class KeepsLoop:
    """A transport that keeps the event loop it was registered with, for its QoS."""

    hub: Any = None

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.hub = loop
        super().register_with_event_loop(connection, loop)  # type: ignore[misc]


class Transport(KeepsLoop, transport.Transport):
    Channel = Channel


class SentinelTransport(KeepsLoop, transport.SentinelTransport):
    Channel = SentinelChannel
