"""Group commit for threads that each need an item written: at most `slots` writes run at once,
and the items that arrive while every slot is busy go together in the next write, one round
trip for all of them (the ingest's gthread workers: up to 64 requests of a process publishing
at the same moment).

The contract each caller relies on: `submit` returns only after a write that held its item
succeeded, and raises that write's error otherwise, so a request answers 202 only for a
delivery that is in Redis (or spooled by its own handler after the error). A failed write
fails every item in it; each caller then handles its own (the ingest spools it).

How: a thread that finds a free slot writes its own item at once. Otherwise it waits; when a
write ends, its writer takes everything waiting and hands it, with the slot, to the first of
those waiters, which writes the lot and wakes the others with the outcome. No thread of its
own, no timer: under light load every item is written alone, as without grouping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class _Waiter(Generic[Item]):
    __slots__ = ("batch", "done", "error", "item")

    def __init__(self, item: Item):
        self.item = item
        self.done = threading.Event()
        self.error: BaseException | None = None
        # set when the slot is handed to this waiter: the batch it must write
        self.batch: list[_Waiter[Item]] | None = None


class GroupCommit(Generic[Item]):
    def __init__(self, write: Callable[[list[Item]], None], *, slots: int,
                 max_batch: int = 100):
        """`write(items)` writes them all or raises; `slots` >= 1 writes may run at once,
        each of at most `max_batch` items."""
        if slots < 1 or max_batch < 1:
            raise ValueError("slots and max_batch must be at least 1")
        self._write = write
        self._free = slots
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Waiter[Item]] = []

    def submit(self, item: Item) -> None:
        """Returns once `item` is written; raises the error of the write that held it."""
        me = _Waiter(item)
        with self._lock:
            if self._free:
                self._free -= 1
                me.batch = [me]
            else:
                self._waiting.append(me)
        if me.batch is None:
            me.done.wait()
            if me.batch is None:  # written by another thread
                if me.error is not None:
                    raise me.error
                return
        self._write_batch(me, me.batch)

    def _write_batch(self, me: _Waiter[Item], batch: list[_Waiter[Item]]) -> None:
        error: BaseException | None = None
        try:
            self._write([waiter.item for waiter in batch])
        except BaseException as raised:
            error = raised
        finally:
            self._hand_on()
            for waiter in batch:
                if waiter is not me:
                    waiter.error = error
                    waiter.done.set()
        if error is not None:
            raise error

    def _hand_on(self) -> None:
        """The slot goes to the first waiter with what waits (up to `max_batch`), or back."""
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            batch = self._waiting[:self._max_batch]
            del self._waiting[:self._max_batch]
        leader = batch[0]
        leader.batch = batch
        leader.done.set()
