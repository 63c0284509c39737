"""A durable local spool for deliveries the broker cannot take right now.

Each delivery is one file, written under a temporary name, fsync'd, renamed into `pending/`,
and the directory fsync'd: once the ingest answers 202, the delivery survives a crash of the
process or the machine. Drainers (one per ingest process) claim a file by renaming it into
`claimed/`, which only one of them can do, publish it, then delete it. A drainer that dies
mid-publish leaves its claim behind; claims older than a minute, counted from the claim, go
back to `pending/`. A delivery published twice that way is a duplicate delivery id, which the
worker ignores. A file that is no delivery (damaged, or not written by this sink) moves to
`quarantine/`, so it never holds up the deliveries behind it; `refund-sink spool list|retry`
shows it and puts it back once fixed."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from broker.wire import from_wire, to_wire
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.metrics import SPOOL_QUARANTINED

log = logging.getLogger("refund_sink.ingest")
STALE_CLAIM_SECONDS = 60


class Spool:
    def __init__(self, directory: str | Path):
        root = Path(directory)
        self.pending, self.claimed = root / "pending", root / "claimed"
        self.quarantine = root / "quarantine"

    def put(self, delivery: RawDelivery) -> None:
        self.pending.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
        temporary = self.pending / f".{name}.tmp"
        with temporary.open("wb") as out:
            out.write(json.dumps(to_wire(delivery)).encode("ascii"))
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
        """Deliveries waiting to be sent; quarantined files wait for an operator instead."""
        return sum(len(_entries(folder)) for folder in (self.pending, self.claimed))

    def drain(self, publish: Callable[[RawDelivery], object]) -> int:
        """Publish spooled deliveries oldest first and return how many were published. A file
        that is no delivery goes to quarantine and the drain goes on; a failed publish puts its
        file back and raises, since the broker is then down for every file behind it."""
        self._release_stale_claims()
        drained = 0
        for name in _entries(self.pending):
            claim = self._claim(name)
            delivery = None if claim is None else self._read_or_quarantine(claim)
            if claim is None or delivery is None:
                continue
            try:
                publish(delivery)
            except Exception:
                _move(claim, self.pending / name)
                raise
            claim.unlink(missing_ok=True)  # gone if a publish stalled past the claim's limit
            drained += 1
        return drained

    def files(self) -> list[tuple[str, Path]]:
        """(state, path) of every file: pending, claimed, then quarantined, oldest first in
        each. A file may be sent or moved by the time the caller looks at it."""
        folders = {"pending": self.pending, "claimed": self.claimed,
                   "quarantined": self.quarantine}
        return [(state, folder / name) for state, folder in folders.items()
                for name in _entries(folder)]

    def quarantined(self) -> list[str]:
        return _entries(self.quarantine)

    def retry(self, name: str) -> bool:
        """Move a quarantined file back to pending/ for the next drain; False if there is no
        quarantined file of that name."""
        if name not in _entries(self.quarantine):
            return False
        self.pending.mkdir(parents=True, exist_ok=True)
        if not _move(self.quarantine / name, self.pending / name):
            return False
        _fsync_directory(self.pending)
        return True

    def _claim(self, name: str) -> Path | None:
        """The file moved into claimed/, or None if another drainer took it first. Its mtime
        is set to now before the move, since rename keeps the mtime of the spooled file: a
        claim's age is then its own, and another process never takes back a fresh claim."""
        self.claimed.mkdir(parents=True, exist_ok=True)
        try:
            os.utime(self.pending / name)
            (self.pending / name).rename(self.claimed / name)
        except FileNotFoundError:
            return None
        return self.claimed / name

    def _read_or_quarantine(self, claim: Path) -> RawDelivery | None:
        try:
            return read(claim)
        except FileNotFoundError:
            return None  # taken back by another drainer after a stall
        except (OSError, ValueError) as error:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            if _move(claim, self.quarantine / claim.name):
                SPOOL_QUARANTINED.inc()
                event(log, "spool file quarantined", logging.ERROR, file=claim.name,
                      error=type(error).__name__)
            return None

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


def read(path: Path) -> RawDelivery:
    """The delivery in a spool file. Raises OSError if it cannot be read, ValueError
    (`MalformedDelivery` among them) if it is not a delivery."""
    return from_wire(json.loads(path.read_bytes()))


def _move(source: Path, target: Path) -> bool:
    """False if the source is gone: another drainer moved it first."""
    try:
        source.rename(target)
    except FileNotFoundError:
        return False
    return True


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
