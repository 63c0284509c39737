"""The start counter (`worker.redeliveries`) on fakeredis: what a poison message's repeated
starts add up to, and that Redis being away never stops a delivery.

Left to `tests/integration/test_poison.py` (real Redis, real worker processes killed
mid-message): that the counts survive the kills that make them."""

from __future__ import annotations

import logging

import fakeredis
import pytest
import redis
from conftest import make_settings
from fake_redis import REDIS_URL

from broker import keys
from refunds.settings import Settings
from worker.redeliveries import COUNTER_TTL_SECONDS, StartCounter

pytestmark = pytest.mark.unit


@pytest.fixture
def settings(fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings("sqlite://", REDIS_URL, "unit:")


def test_each_start_counts_until_the_message_ends(
    settings: Settings, fake_client: redis.Redis
) -> None:
    counter = StartCounter(settings)
    assert [counter.start("m-1") for _ in range(3)] == [1, 2, 3]
    assert counter.start_all(["m-1", "m-2"]) == {"m-1": 4, "m-2": 1}
    # the counters are the sink's, scoped by prefix and queue, and expire on their own
    key = keys.scoped(settings, keys.STARTS) + "m-1"
    assert key.startswith("unit:refund-sink:refunds-unit:")
    assert 0 < fake_client.ttl(key) <= COUNTER_TTL_SECONDS
    # when the message ends normally, its count is gone: a later start is the first again
    counter.finish("m-1", "m-2")
    assert fake_client.keys("*") == []
    assert counter.start("m-1") == 1


def test_another_queue_counts_on_its_own(settings: Settings) -> None:
    StartCounter(settings).start("m-1")
    other = make_settings("sqlite://", REDIS_URL, "unit:", queue="refunds-other")
    assert StartCounter(other).start("m-1") == 1


def test_redis_away_counts_every_start_as_the_first(
    settings: Settings, fake_server: fakeredis.FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    counter = StartCounter(settings)
    counter.start("m-1")
    counter.start("m-1")
    fake_server.connected = False
    with caplog.at_level(logging.WARNING, "refund_sink.worker"):
        assert counter.start_all(["m-1", "m-2"]) == {"m-1": 1, "m-2": 1}
        counter.finish("m-1")  # no error: the counter expires on its own
    assert "cannot count starts of 2 messages (ConnectionError)" in caplog.text
    fake_server.connected = True
    assert counter.start("m-1") == 3  # the count Redis kept
