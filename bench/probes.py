"""Readings taken from outside the stack's processes, for bench.costs: CPU seconds of any
process from /proc/<pid>/stat, Redis commands from INFO commandstats, PostgreSQL's counters
from its statistics views. None depends on how the ingest or the worker work inside."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, LiteralString

import psutil
import psycopg

from bench.stack import Stack


# -- processes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    ppid: int
    name: str
    cpu: float  # seconds, user + system


def processes() -> dict[int, Proc]:
    """Every process of the machine: parent, name, CPU seconds (psutil, as bench.monitor)."""
    found = {}
    for proc in psutil.process_iter(["ppid", "name", "cpu_times"]):
        info = proc.info
        if info["cpu_times"] is not None:  # None: ended or not ours to read meanwhile
            found[proc.pid] = Proc(info["ppid"], info["name"],
                                   info["cpu_times"].user + info["cpu_times"].system)
    return found


def children(table: dict[int, Proc], pid: int) -> list[int]:
    return [child for child, proc in table.items() if proc.ppid == pid]


def cpu_ms(before: dict[int, Proc], after: dict[int, Proc], pids: list[int], n: int) -> float:
    """CPU ms per delivery of `pids` between two snapshots (one started between counts from
    zero; one ended between is lost, so the snapshots are taken while the roles run)."""
    spent = sum(after[p].cpu - (before[p].cpu if p in before else 0.0) for p in pids if p in after)
    return 1000 * spent / n


def pause_when_ready(worker: subprocess.Popen[bytes], concurrency: int) -> None:
    """Wait until the worker's pool is forked and the worker idle (start-up done, a second
    with under 30 ms of CPU), then stop its main process: nothing consumes until resumed."""
    deadline, last = time.monotonic() + 120, -1.0
    while time.monotonic() < deadline:
        table = processes()
        pool = children(table, worker.pid)
        spent = sum(table[p].cpu for p in [worker.pid, *pool] if p in table)
        if len(pool) >= concurrency and spent - last < 0.03:
            os.kill(worker.pid, signal.SIGSTOP)
            return
        last = spent
        time.sleep(1.0)
    raise TimeoutError("the worker did not settle within 120 s")


# -- Redis and PostgreSQL ---------------------------------------------------------------------
def redis_calls(stack: Stack) -> Counter[str]:
    stats = stack.redis().info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})


def per_delivery(before: dict[str, int], after: dict[str, int], n: int,
                 skip: tuple[str, ...] = ("info",)) -> dict[str, float]:
    """Each counter's growth per delivery, largest first; `info` is this tool's own."""
    grown = {k: (v - before.get(k, 0)) / n for k, v in after.items() if k not in skip}
    return dict(sorted(((k, v) for k, v in grown.items() if v), key=lambda kv: -kv[1]))


DB_STATS = ("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted"
            " FROM pg_stat_database WHERE datname = current_database()")
TABLE_STATS = "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
BACKENDS = ("SELECT pid, datname = current_database() FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid()"
            " AND (datname = current_database() OR backend_type <> 'client backend')")
PROGRESS = ("SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM pg_stat_activity"
            " WHERE state = 'active' AND backend_type = 'client backend'"
            " AND datname <> current_database())")


class Pg:
    """An autocommit connection to the bench database that counts its own transactions, so
    they can be taken out of xact_commit (statistics reach the view when a backend exits)."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.queries = 0

    def rows(self, sql: LiteralString) -> list[tuple[Any, ...]]:
        self.queries += 1
        return self.conn.execute(sql).fetchall()

    def stats(self) -> dict[str, int]:
        (row,) = self.rows(DB_STATS)
        found = dict(zip(("xact_commit", "xact_rollback", "rows inserted", "rows updated",
                          "rows deleted"), map(int, row), strict=True))
        for table, *counts in self.rows(TABLE_STATS):
            for kind, count in zip(("inserted", "updated", "deleted"), counts, strict=True):
                found[f"{table} {kind}"] = int(count)
        return found

    def wal(self) -> int:
        (row,) = self.rows("SELECT pg_current_wal_lsn()::text")
        high, low = str(row[0]).split("/")
        return (int(high, 16) << 32) + int(low, 16)

    def wait_applied(self, n: int, timeout: float) -> float:
        """Poll until `n` claims exist; the share of polls that saw another database's query
        running (the server is shared: WAL and background CPU include theirs)."""
        polls = busy = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ((done, others),) = self.rows(PROGRESS)
            polls, busy = polls + 1, busy + (int(others) > 0)
            if done >= n:
                return busy / polls
            time.sleep(0.5)
        raise TimeoutError(f"{n} deliveries not applied within {timeout:.0f}s")

    def backends(self) -> tuple[list[int], list[int]]:
        """PostgreSQL's processes now: the bench database's backends (this one excepted),
        and the background processes every database shares."""
        found = self.rows(BACKENDS)
        return [pid for pid, ours in found if ours], [pid for pid, ours in found if not ours]
