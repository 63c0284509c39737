"""The folder `refund-sink run` keeps its state in (`.refund-sink/` in the working directory):
its webhook secret, a record of where the sink it started is (broker, database, queue,
webhook URL), and a lock held while it runs.

Every other command run in the same folder takes the recorded addresses for the variables
its own environment leaves unset, so a second terminal reaches the sink `run` started, not
the defaults. The record names where the webhook secret came from, never the secret."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from refund_sink.servers import ServerError
from refunds.settings import ConfigError

DATA_DIR = Path(".refund-sink")
SECRET_FILE = DATA_DIR / "secret"
RECORD_FILE = DATA_DIR / "run.json"
LOCK_FILE = DATA_DIR / "run.lock"
# What says where the sink is: recorded by `run`, read by every other command in the folder.
ADDRESSES = ("DATABASE_URL", "REDIS_URL", "REFUND_SINK_QUEUE", "REFUND_SINK_REDIS_KEY_PREFIX",
             "REFUND_SINK_SPOOL_DIR")
SECRET_FROM_ENVIRONMENT = "GENSTORE_WEBHOOK_SECRET"  # noqa: S105 - a variable name


@dataclass(frozen=True)
class Record:
    webhook_url: str
    secret_source: str  # SECRET_FROM_ENVIRONMENT or the path of SECRET_FILE
    pid: int
    addresses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, env: Mapping[str, str], *, webhook_url: str, secret_source: str) -> Record:
        return cls(webhook_url, secret_source, os.getpid(),
                   {name: env[name] for name in ADDRESSES if env.get(name)})

    def write(self) -> None:
        """Readable by the owner only: a DATABASE_URL may carry a password."""
        DATA_DIR.mkdir(exist_ok=True)
        partial = RECORD_FILE.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(json.dumps(asdict(self), indent=2) + "\n")
        partial.replace(RECORD_FILE)


def recorded() -> Record | None:
    """What the last `run` in this folder recorded, or None (no `run` here)."""
    try:
        found = json.loads(RECORD_FILE.read_text())
        return Record(str(found["webhook_url"]), str(found["secret_source"]), int(found["pid"]),
                      {str(k): str(v) for k, v in dict(found["addresses"]).items()})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{RECORD_FILE} is damaged: delete it, or start `refund-sink run` "
                          "here again to rewrite it") from None


def use_recorded_addresses(env: MutableMapping[str, str]) -> None:
    """Fill the addresses `env` leaves unset (or empty) with the recorded ones: a variable set
    explicitly always wins."""
    record = recorded()
    for name, value in (record.addresses if record else {}).items():
        if not env.get(name):
            env[name] = value


class RunLock:
    """Held by one `run` in a folder while it runs. An advisory lock (flock) on a file that
    names the holder's pid: the kernel releases it when the process ends however it ends, so
    a file left behind by a killed `run` is stale, not a lock."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        DATA_DIR.mkdir(exist_ok=True)
        lock = LOCK_FILE.open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise ServerError(f"another `refund-sink run` (pid {holder}) is using {DATA_DIR}/ "
                              "in this folder: stop it first, or run from another folder"
                              ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        self._file = lock

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the flock
            self._file = None
