"""`python -m bench.costs [--deliveries 3000] [--batch-size 100] [--json PATH]`: what one
delivery costs each role of the stack, the inputs of docs/capacity.md.

Measured from outside the processes (CPU time from /proc, Redis INFO, PostgreSQL's statistics
views), so the figures stay true whatever the worker's consume path or the ingest's publish
do inside. Two phases on the real stack with the shipped settings: the ingest takes N signed
deliveries while the workers are paused (SIGSTOP once started, so start-up is not counted),
then the workers, resumed, apply the filled queue. CPU-ms per delivery hardly depends on the
rate or on the machine's other tenants; rates do, so none is reported as a figure."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench import load, report
from bench.probes import (
    Pg,
    children,
    cpu_ms,
    pause_when_ready,
    per_delivery,
    processes,
    redis_calls,
)
from bench.scenarios import _signed
from bench.stack import Config, Stack
from bench.statements import statements_per_delivery
from refunds.settings import Settings

Figures = dict[str, Any]


def used_memory(stack: Stack) -> int:
    return int(stack.redis().info("memory")["used_memory"])


def wait_queued(stack: Stack, accepted: int, timeout: float = 30.0) -> None:
    """A delivery the ingest spooled (its publish failed) reaches the queue when the ingest
    sends its spool, seconds later: wait for it, so that the apply phase gets them all."""
    deadline = time.monotonic() + timeout
    while stack.queue_depth() < accepted and time.monotonic() < deadline:
        time.sleep(0.2)


# -- phases -----------------------------------------------------------------------------------
def ingest_phase(stack: Stack, n: int) -> Figures:
    """N signed deliveries posted through gunicorn by the Python generator, workers paused."""
    assert stack.redis_proc is not None
    requests = [s.request_bytes("bench") for s in _signed(stack, n)]
    http, address = stack.start_http()
    calls, memory, cpu = redis_calls(stack), used_memory(stack), processes()
    posted = load.run_python(address, requests, processes=2, connections=16)
    wait_queued(stack, posted.accepted)
    calls_after, memory_after, cpu_after = redis_calls(stack), used_memory(stack), processes()
    stack.stop(http)
    queued = stack.queue_depth()
    roles = {"ingest worker processes": children(cpu_after, http.pid),
             "ingest master": [http.pid], "redis-server": [stack.redis_proc.pid]}
    return {
        "accepted": posted.accepted, "errors": posted.errors, "queued": queued,
        "cpu_ms": {role: cpu_ms(cpu, cpu_after, pids, n) for role, pids in roles.items()},
        "redis_calls": per_delivery(calls, calls_after, n),
        "redis_bytes_per_queued": (memory_after - memory) / max(1, queued),
    }


def apply_phase(stack: Stack, n: int, worker: subprocess.Popen[bytes]) -> Figures:
    """The paused workers resumed on the filled queue until every delivery is claimed."""
    assert stack.redis_proc is not None
    pg = Pg(stack.database_url)
    stats, wal, calls, cpu = pg.stats(), pg.wal(), redis_calls(stack), processes()
    started = time.monotonic()
    os.kill(worker.pid, signal.SIGCONT)
    shared = pg.wait_applied(n, timeout=600 + n / 20)
    seconds = time.monotonic() - started
    cpu_after, calls_after, wal_after = processes(), redis_calls(stack), pg.wal()
    backends, background = pg.backends()
    stack.stop(worker)
    pg.conn.close()
    time.sleep(1.5)  # exiting backends hand in their statistics
    final = Pg(stack.database_url)
    stats_after = final.stats()
    final.conn.close()
    stats_after["xact_commit"] -= pg.queries  # the probe's own
    postgres = [pid for pid, proc in cpu_after.items() if proc.name == "postgres"]
    roles = {"worker main": [worker.pid], "worker pool": children(cpu_after, worker.pid),
             "redis-server": [stack.redis_proc.pid],
             "postgres, bench database backends": backends,
             "postgres, background processes": background,
             "postgres, every process": postgres}
    counts = stack.counts()
    return {
        "applied": counts["deliveries"], "dead_letters": counts["dead_letters"],
        "seconds": seconds, "other_databases_busy": shared,
        "cpu_ms": {role: cpu_ms(cpu, cpu_after, pids, n) for role, pids in roles.items()},
        "redis_calls": per_delivery(calls, calls_after, n),
        "postgres": per_delivery(stats, stats_after, n, skip=()),
        "wal_bytes": (wal_after - wal) / n,
    }


SIZES = ("SELECT c.relname, pg_total_relation_size(c.oid), pg_indexes_size(c.oid)"
         " FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace"
         " WHERE s.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'alembic_version'")


def storage(stack: Stack, n: int) -> Figures:
    """Bytes per row of every table that holds rows (heap, TOAST and indexes; indexes alone),
    after VACUUM ANALYZE, and all of them per delivery."""
    tables: Figures = {}
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        for name, total, indexes in conn.execute(SIZES).fetchall():
            (rows,) = conn.execute(f'SELECT count(*) FROM "{name}"').fetchone() or (0,)  # noqa: S608
            if rows:
                tables[name] = {"rows": rows, "bytes_per_row": total / rows,
                                "index_bytes_per_row": indexes / rows, "bytes": total}
    per = sum(t["bytes"] for t in tables.values()) / n
    return {"tables": tables, "bytes_per_delivery": per}


def measure(stack: Stack, n: int) -> Figures:
    """Both phases, then storage and statements; the workers are paused before the ingest
    runs, so each phase's CPU is its own."""
    worker = stack.start_workers()
    try:
        pause_when_ready(worker, stack.config.worker_concurrency)
        empty = used_memory(stack)
        figures = {"ingest": ingest_phase(stack, n)}
        figures["apply"] = apply_phase(stack, figures["ingest"]["queued"], worker)
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
        stack.stop(worker)
    figures["apply"]["redis_bytes_left_per_delivery"] = (used_memory(stack) - empty) / n
    figures["storage"] = storage(stack, n)
    batch = stack.config.batch_size
    figures["statements"] = {str(size): statements_per_delivery(stack, size)
                             for size in sorted({1, 10, batch})}
    return figures


# -- the table --------------------------------------------------------------------------------
def render(figures: Figures) -> list[str]:
    ingest, apply, store = figures["ingest"], figures["apply"], figures["storage"]
    lines = ["| phase | role | CPU ms per delivery |", "| --- | --- | ---: |"]
    lines += [f"| ingest | {role} | {ms:.3f} |" for role, ms in ingest["cpu_ms"].items()]
    lines += [f"| apply | {role} | {ms:.3f} |" for role, ms in apply["cpu_ms"].items()]
    lines += ["", "| phase | Redis command | calls per delivery |", "| --- | --- | ---: |"]
    for phase in ("ingest", "apply"):
        lines += [f"| {phase} | {cmd} | {calls:.3f} |"
                  for cmd, calls in figures[phase]["redis_calls"].items()]
    lines += ["", "| PostgreSQL, apply phase | per delivery |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.3f} |" for name, value in apply["postgres"].items()]
    lines += [f"| WAL bytes | {apply['wal_bytes']:.0f} |"]
    lines += [f"| SQL statements, list of {size} (in-process count) | {value:.2f} |"
              for size, value in sorted(figures["statements"].items(), key=lambda kv: int(kv[0]))]
    lines += ["", "| table | rows | bytes per row | of which indexes |",
              "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {t['rows']} | {t['bytes_per_row']:.0f}"
              f" | {t['index_bytes_per_row']:.0f} |" for name, t in store["tables"].items()]
    lines += [f"| all tables, per delivery | | {store['bytes_per_delivery']:.0f} | |", "",
              f"Redis memory per queued delivery (queue and ledger):"
              f" {ingest['redis_bytes_per_queued']:.0f} bytes; left per applied delivery:"
              f" {apply['redis_bytes_left_per_delivery']:.0f} bytes.",
              f"Another database was running a query in {100 * apply['other_databases_busy']:.0f}%"
              " of the polls during the apply phase (WAL and background CPU include theirs)."]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.costs", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size,
                        help="REFUND_SINK_BATCH_SIZE and prefetch (default: the product's)")
    parser.add_argument("--log-level", default=Config.log_level)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still clean up the stack
    config = Config(batch_size=args.batch_size, prefetch=args.batch_size,
                    log_level=args.log_level.upper())
    with Stack(config) as stack:
        figures = {"machine": report.machine(),
                   "versions": report.versions(stack.redis_url, stack.database_url),
                   "config": vars(config) | {"deliveries": args.deliveries},
                   "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                   **measure(stack, args.deliveries)}
    print(f"bench.costs, {figures['date']}, {args.deliveries} deliveries, batch size"
          f" {args.batch_size}, log level {config.log_level}")
    print("\n".join(render(figures)))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
