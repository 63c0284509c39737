"""A durable local spool for deliveries the broker cannot take right now.

Each delivery is one file, written under a temporary name, fsync'd, renamed into `pending/`,
and the directory fsync'd: once the ingest answers 202, the delivery survives a crash of the
process or the machine. Drainers (one per ingest process) claim a file by renaming it into
`claimed/`, which only one of them can do, publish it, then delete it. A drainer that dies
mid-publish leaves its claim behind; claims older than a minute go back to `pending/`. A
delivery published twice that way is a duplicate delivery id, which the worker ignores."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from refunds.delivery import RawDelivery

log = logging.getLogger("refund_sink.ingest")
STALE_CLAIM_SECONDS = 60


class Spool:
    def __init__(self, directory: str | Path):
        self.pending = Path(directory) / "pending"
        self.claimed = Path(directory) / "claimed"

    def put(self, delivery: RawDelivery) -> None:
        self.pending.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
        temporary = self.pending / f".{name}.tmp"
        with temporary.open("wb") as out:
            out.write(json.dumps(delivery.to_wire()).encode("ascii"))
            out.flush()
            os.fsync(out.fileno())
        temporary.rename(self.pending / name)
        _fsync_directory(self.pending)

    def writable(self) -> bool:
        try:
            self.pending.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.pending, os.W_OK)

    def count(self) -> int:
        return sum(len(_entries(folder)) for folder in (self.pending, self.claimed))

    def drain(self, publish: Callable[[RawDelivery], object]) -> int:
        """Publish spooled deliveries oldest first; stop at the first failure."""
        self._release_stale_claims()
        drained = 0
        for name in _entries(self.pending):
            claim = self.claimed / name
            self.claimed.mkdir(parents=True, exist_ok=True)
            try:
                (self.pending / name).rename(claim)
            except FileNotFoundError:
                continue  # another drainer took it
            try:
                publish(RawDelivery.from_wire(json.loads(claim.read_bytes())))
            except Exception:
                claim.rename(self.pending / name)
                raise
            claim.unlink()
            drained += 1
        return drained

    def _release_stale_claims(self) -> None:
        cutoff = time.time() - STALE_CLAIM_SECONDS
        for name in _entries(self.claimed):
            claim = self.claimed / name
            try:
                if claim.stat().st_mtime < cutoff:
                    claim.rename(self.pending / name)
            except FileNotFoundError:
                continue


class Drainer:
    """A background thread per ingest process that empties the spool once the broker is back."""

    def __init__(self, spool: Spool, publish: Callable[[RawDelivery], object],
                 interval: float = 1.0):
        self.spool, self.publish, self.interval = spool, publish, interval
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="spool-drainer",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while self.spool.count():
            try:
                drained = self.spool.drain(self.publish)
            except Exception as error:
                log.warning("spool: broker still unavailable (%s); %d deliveries waiting",
                            type(error).__name__, self.spool.count())
                time.sleep(self.interval)
                continue
            if drained:
                log.info("spool: %d deliveries sent to the broker", drained)
            if self.spool.count():
                time.sleep(self.interval)


def _entries(folder: Path) -> list[str]:
    try:
        return sorted(name for name in os.listdir(folder) if name.endswith(".json")
                      and not name.startswith("."))
    except OSError:  # not created yet, or not usable (then put() fails and says so)
        return []


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
