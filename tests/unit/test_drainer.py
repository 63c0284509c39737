"""The spool's publish decisions: the ingest's choice between queue and spool
(`ingest.services.Services.accept`) and the drainer's thread (`broker.spool.Drainer`), with a
fake publish or kombu publishing to fakeredis. File handling of `Spool.drain` itself is in
`test_spool.py`.

Left to `tests/integration/test_broker_outage.py` (a real Redis stopped, then started on the
same port): kombu's connection recovering after the outage, which fakeredis cannot stage."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fakeredis
import pytest
from conftest import make_settings
from deliveries import delivery
from fake_redis import REDIS_URL
from payloads import camel_event
from queued_messages import ledger_entries, queued

from broker.app import make_celery
from broker.spool import Drainer, Spool
from ingest import services as services_module
from ingest.services import Services
from refunds.delivery import RawDelivery
from refunds.settings import Settings

pytestmark = pytest.mark.unit


def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the drainer did not finish"
        time.sleep(0.01)


def drainers() -> int:
    return sum(thread.name == "spool-drainer" for thread in threading.enumerate())


def spooled(spool: Spool, *refund_ids: str) -> list[RawDelivery]:
    found = [delivery(camel_event(refund_id=refund_id), delivery_id=f"d-{refund_id}")
             for refund_id in refund_ids]
    for raw in found:
        spool.put(raw)
    return found


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    found = Spool(tmp_path / "spool")
    yield found
    until(lambda: drainers() == 0)  # no thread outlives its test


def test_the_drainer_retries_until_the_broker_takes_everything_oldest_first(
    spool: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    # given three spooled deliveries and a broker that refuses the first two publishes
    sent = spooled(spool, "1", "2", "3")
    published: list[str] = []
    refusals = iter([True, True])

    def publish(raw: RawDelivery) -> None:
        if next(refusals, False):
            raise ConnectionError("broker down")
        published.append(raw.delivery_id)

    # when the drainer runs
    with caplog.at_level(logging.INFO, "refund_sink.ingest"):
        Drainer(spool, publish, interval=0.01).ensure_running()
        until(lambda: spool.count() == 0 and drainers() == 0)
    # then each went once, oldest first, and the log says why it waited
    assert published == [raw.delivery_id for raw in sent]
    assert "broker still unavailable (ConnectionError); 3 deliveries waiting" in caplog.text
    assert "3 deliveries sent to the broker" in caplog.text


def test_one_drainer_thread_per_process_while_it_runs(spool: Spool) -> None:
    spooled(spool, "1")
    release = threading.Event()
    drainer = Drainer(spool, lambda _raw: release.wait(5), interval=0.01)
    drainer.ensure_running()
    drainer.ensure_running()
    assert drainers() == 1
    release.set()
    until(lambda: spool.count() == 0 and drainers() == 0)
    # an empty spool ends the thread; the next spooled delivery starts one again
    spooled(spool, "2")
    drainer.ensure_running()
    until(lambda: spool.count() == 0 and drainers() == 0)


@pytest.fixture
def settings(spool: Spool, fake_server: fakeredis.FakeServer) -> Settings:
    return make_settings("sqlite://", REDIS_URL, "unit:", spool_dir=str(spool.pending.parent))


def test_the_ingest_spools_while_the_broker_is_away_and_the_drainer_queues_later(
    settings: Settings, fake_server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services_module, "BROKER_BACKOFF_SECONDS", 0.3)
    services = Services(settings, make_celery(settings))
    services.drainer.interval = 0.01
    first, second, third, fourth = (delivery(camel_event(refund_id=str(number)),
                                             delivery_id=f"d-{number}") for number in range(4))
    # the broker answers: queued, with its ledger entry
    assert services.accept(first) == "queue"
    # the broker gone: spooled, and the next delivery goes straight to the spool
    fake_server.connected = False
    assert services.accept(second) == "spool"
    fake_server.connected = True
    assert services.accept(third) == "spool"  # within the backoff: no publish tried
    # the drainer hands both over; after the backoff the ingest publishes again
    until(lambda: services.spool.count() == 0 and drainers() == 0)
    time.sleep(0.3)
    assert services.accept(fourth) == "queue"
    assert sorted(raw.delivery_id for raw in queued(settings)) == ["d-0", "d-1", "d-2", "d-3"]
    assert sorted(raw.delivery_id for raw in ledger_entries(settings).values()) == [
        "d-0", "d-1", "d-2", "d-3"]
