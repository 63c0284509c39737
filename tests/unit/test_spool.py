"""The spool: durable files, oldest first, one publish per file even with several drainers."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.spool import Spool
from refunds.delivery import RawDelivery


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
