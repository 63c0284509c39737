"""The spool: durable files, oldest first, one publish per file even with several drainers."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from broker.spool import Spool
from broker.wire import to_wire
from refunds.delivery import RawDelivery

pytestmark = pytest.mark.unit


def raw(number: int) -> RawDelivery:
    return RawDelivery(delivery_id=f"d-{number}", topic="refunds/create", shop="default",
                       body=f'{{"n": {number}}}'.encode(), received_at=datetime.now(UTC))


def test_put_then_drain_oldest_first_keeps_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for number in range(5):
        spool.put(raw(number))
    assert spool.count() == 5
    # a process restart sees the same files
    sent: list[RawDelivery] = []
    assert Spool(tmp_path).drain(sent.append) == 5
    assert [d.delivery_id for d in sent] == [f"d-{n}" for n in range(5)]
    assert sent[3].body == raw(3).body
    assert spool.count() == 0


def test_a_failed_publish_stops_and_keeps_the_delivery(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(raw(1))
    spool.put(raw(2))

    def broker_down(_delivery: RawDelivery) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        spool.drain(broker_down)
    assert spool.count() == 2
    sent: list[RawDelivery] = []
    spool.drain(sent.append)
    assert [d.delivery_id for d in sent] == ["d-1", "d-2"]


def test_stale_claims_of_a_crashed_drainer_are_sent_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.put(raw(1))
    [name] = [p.name for p in spool.pending.iterdir()]
    spool.claimed.mkdir()
    (spool.pending / name).rename(spool.claimed / name)  # a drainer died holding it
    sent: list[RawDelivery] = []
    assert spool.drain(sent.append) == 0  # a fresh claim is left to its owner
    os.utime(spool.claimed / name, (0, 0))  # and now it is long stale
    assert spool.drain(sent.append) == 1
    assert [d.delivery_id for d in sent] == ["d-1"]


def test_concurrent_drainers_publish_each_delivery_once(tmp_path: Path) -> None:
    Spool(tmp_path)
    for number in range(200):
        Spool(tmp_path).put(raw(number))
    sent: list[str] = []
    lock = threading.Lock()

    def publish(delivery: RawDelivery) -> None:
        with lock:
            sent.append(delivery.delivery_id)

    drainers = [threading.Thread(target=Spool(tmp_path).drain, args=(publish,))
                for _ in range(4)]
    for thread in drainers:
        thread.start()
    for thread in drainers:
        thread.join()
    assert sorted(sent) == sorted(f"d-{n}" for n in range(200))


def test_unwritable_spool_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert not Spool(blocker / "spool").writable()
    assert Spool(tmp_path / "ok").writable()


def test_finding_6_claim_age_measured_from_the_claim(tmp_path: Path) -> None:
    # given a delivery spooled long ago (a Redis outage of more than a minute)
    spool = Spool(tmp_path)
    spool.put(raw(1))
    [name] = [p.name for p in spool.pending.iterdir()]
    os.utime(spool.pending / name, (0, 0))
    second: list[RawDelivery] = []

    def publish_while_another_drainer_runs(delivery: RawDelivery) -> None:
        # when another process's drainer runs while this claim is in flight
        assert Spool(tmp_path).drain(second.append) == 0
        first.append(delivery)

    first: list[RawDelivery] = []
    # then the fresh claim is left to its owner: one publish, no error
    assert spool.drain(publish_while_another_drainer_runs) == 1
    assert [d.delivery_id for d in first] == ["d-1"] and second == []
    assert spool.count() == 0


@pytest.mark.parametrize("published", [True, False], ids=["published", "broker_down"])
def test_finding_6_a_claim_that_vanished_is_not_an_error(tmp_path: Path,
                                                         published: bool) -> None:
    # given a drainer whose publish stalls past the stale-claim limit
    spool = Spool(tmp_path)
    spool.put(raw(1))
    [name] = [p.name for p in spool.pending.iterdir()]
    other: list[RawDelivery] = []

    def stalled_publish(_delivery: RawDelivery) -> None:
        os.utime(spool.claimed / name, (0, 0))
        # when another drainer takes the claim back and sends it meanwhile
        assert Spool(tmp_path).drain(other.append) == 1
        if not published:
            raise ConnectionError("down")

    # then the first drainer's claim is simply gone: no FileNotFoundError
    if published:
        assert spool.drain(stalled_publish) == 1
    else:
        with pytest.raises(ConnectionError):
            spool.drain(stalled_publish)
    assert [d.delivery_id for d in other] == ["d-1"]
    assert spool.count() == 0


def test_finding_6_unreadable_file_is_quarantined_and_drain_continues(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given two files that are no delivery between good ones
    spool = Spool(tmp_path)
    spool.put(raw(1))
    bad_json = spool_file(spool, b'{"body": "secret-marker')
    not_a_delivery = spool_file(spool, b'{"body": "secret-marker"}')
    spool.put(raw(4))
    before = quarantined_total()
    sent: list[RawDelivery] = []
    # when the spool drains
    with caplog.at_level(logging.INFO, logger="refund_sink.ingest"):
        assert spool.drain(sent.append) == 2
    # then every good delivery is sent, the bad files wait in quarantine/, counted and logged
    assert [d.delivery_id for d in sent] == ["d-1", "d-4"]
    assert sorted(p.name for p in spool.quarantine.iterdir()) == [bad_json, not_a_delivery]
    assert spool.count() == 0
    assert quarantined_total() - before == 2
    events = [r for r in caplog.records if getattr(r, "event", "") == "spool file quarantined"]
    assert [r.file for r in events] == [bad_json, not_a_delivery]  # type: ignore[attr-defined]
    assert "secret-marker" not in caplog.text


def test_a_retried_file_goes_back_to_pending(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    name = spool_file(spool, b"[]")
    spool.drain(lambda _delivery: None)
    assert spool.files() == [("quarantined", spool.quarantine / name)]
    assert spool.retry(name) and not spool.retry(name) and not spool.retry("../x.json")
    (spool.pending / name).write_text(json.dumps(to_wire(raw(2))))  # fixed by hand
    sent: list[RawDelivery] = []
    assert spool.drain(sent.append) == 1
    assert [d.delivery_id for d in sent] == ["d-2"] and spool.files() == []


def spool_file(spool: Spool, content: bytes) -> str:
    """A file in pending/ after the ones spooled so far, as if written by an older version
    or damaged on disk."""
    spool.pending.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
    (spool.pending / name).write_bytes(content)
    return name


def quarantined_total() -> float:
    return REGISTRY.get_sample_value("refund_sink_spool_quarantined_total") or 0.0
