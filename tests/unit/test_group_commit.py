"""Group commit (`broker.group_commit`): every submitter returns only after a write that held
its item succeeded, and raises that write's error otherwise; items that wait while the slots
are busy go together in one write. Threads are coordinated by events, not timing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from broker.group_commit import GroupCommit

pytestmark = pytest.mark.unit


class GatedWrites:
    """A write function whose first call blocks until released, recording every batch."""

    def __init__(self, fail_on: Callable[[list[int]], bool] = lambda _items: False):
        self.batches: list[list[int]] = []
        self.first_started = threading.Event()
        self.release_first = threading.Event()
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> None:
        with self.lock:
            first = not self.batches
            self.batches.append(list(items))
        if first:
            self.first_started.set()
            assert self.release_first.wait(10)
        if self.fail_on(items):
            raise ConnectionError(f"lost {items}")


def submit_in_threads(group: GroupCommit[int], items: list[int]
                      ) -> tuple[list[threading.Thread], dict[int, BaseException | None]]:
    outcomes: dict[int, BaseException | None] = {}

    def run(item: int) -> None:
        try:
            group.submit(item)
        except BaseException as error:
            outcomes[item] = error
        else:
            outcomes[item] = None

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    return threads, outcomes


def wait_until_waiting(group: GroupCommit[int], count: int) -> None:
    for _ in range(10_000):
        with group._lock:
            if len(group._waiting) == count:
                return
        threading.Event().wait(0.001)
    raise AssertionError(f"never {count} waiting")


def test_alone_an_item_is_written_at_once() -> None:
    written: list[list[int]] = []
    group = GroupCommit(written.append, slots=1)
    group.submit(1)
    group.submit(2)
    assert written == [[1], [2]]


def test_items_arriving_while_the_slot_is_busy_go_together_and_all_wait_for_it() -> None:
    # given a write in progress holding the only slot
    writes = GatedWrites()
    group: GroupCommit[int] = GroupCommit(writes, slots=1)
    first, first_outcome = submit_in_threads(group, [0])
    assert writes.first_started.wait(10)
    # when three more arrive meanwhile
    others, outcomes = submit_in_threads(group, [1, 2, 3])
    wait_until_waiting(group, 3)
    # then none of them has returned before a write held it
    assert outcomes == {}
    writes.release_first.set()
    for thread in first + others:
        thread.join(10)
    # and they went in one second write, each returning without error
    assert writes.batches[0] == [0]
    assert sorted(writes.batches[1]) == [1, 2, 3] and len(writes.batches) == 2
    assert first_outcome == {0: None}
    assert outcomes == {1: None, 2: None, 3: None}


def test_a_failed_write_fails_every_item_in_it_and_only_those() -> None:
    # given a first write that will succeed, and a second, grouped one that fails
    writes = GatedWrites(fail_on=lambda items: 1 in items)
    group: GroupCommit[int] = GroupCommit(writes, slots=1)
    first, first_outcome = submit_in_threads(group, [0])
    assert writes.first_started.wait(10)
    others, outcomes = submit_in_threads(group, [1, 2])
    wait_until_waiting(group, 2)
    writes.release_first.set()
    for thread in first + others:
        thread.join(10)
    # then both grouped items raise the write's error; the first one succeeded
    assert first_outcome == {0: None}
    assert all(isinstance(outcomes[item], ConnectionError) for item in (1, 2))
    # and the slot is free again: a later item is written alone
    group.submit(3)
    assert writes.batches[-1] == [3]


def test_batches_are_capped() -> None:
    writes = GatedWrites()
    group: GroupCommit[int] = GroupCommit(writes, slots=1, max_batch=2)
    first, _ = submit_in_threads(group, [0])
    assert writes.first_started.wait(10)
    others, outcomes = submit_in_threads(group, [1, 2, 3, 4, 5])
    wait_until_waiting(group, 5)
    writes.release_first.set()
    for thread in first + others:
        thread.join(10)
    assert all(len(batch) <= 2 for batch in writes.batches)
    assert sorted(item for batch in writes.batches for item in batch) == [0, 1, 2, 3, 4, 5]
    assert outcomes == dict.fromkeys(range(1, 6))


def test_slots_allow_that_many_writes_at_once() -> None:
    # given two slots, one taken by a blocked write
    writes = GatedWrites()
    group: GroupCommit[int] = GroupCommit(writes, slots=2)
    first, _ = submit_in_threads(group, [0])
    assert writes.first_started.wait(10)
    # then a second item is written at once, not made to wait
    group.submit(1)
    assert writes.batches == [[0], [1]]
    writes.release_first.set()
    for thread in first:
        thread.join(10)


def test_slots_must_be_positive() -> None:
    with pytest.raises(ValueError):
        GroupCommit(lambda _items: None, slots=0)
