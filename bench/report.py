"""The machine, the versions, and the table of medians."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from typing import Any

import psutil
import psycopg
import redis


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model,
            "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
            "kernel": platform.release()}


def versions(redis_url: str, database_url: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("flask", "gunicorn", "celery", "kombu", "redis", "sqlalchemy", "psycopg",
                    "pydantic"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "-"
    found["redis server"] = str(redis.Redis.from_url(redis_url).info()["redis_version"])
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        found["postgres server"] = str(row[0]) if row else "?"
    try:
        found["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True,
                                      text=True).stdout.split("[")[0].strip() or "-"
    except OSError:
        found["wrk"] = "not installed"
    return found


def median(runs: Sequence[dict[str, Any]], key: str) -> float:
    values = [float(r[key]) for r in runs if key in r]
    return statistics.median(values) if values else float("nan")


def spread(runs: Sequence[dict[str, Any]], key: str, fmt: str = "{:.0f}") -> str:
    values = [float(r[key]) for r in runs if key in r]
    if len(values) < 2:
        return ""
    return f" (runs: {', '.join(fmt.format(v) for v in values)})"


def row(figure: str, value: str, target: str = "", note: str = "") -> str:
    return f"| {figure} | {value} | {target} | {note} |"


def table(results: dict[str, Any]) -> list[str]:
    lines = ["| figure | median | target | runs / notes |", "| --- | --- | --- | --- |"]
    if "S1" in results:
        r = results["S1"]
        ratio = median(r, "ratio")
        lines += [
            row("S1 bare route, req/s", f"{median(r, 'bare_rate'):.0f}", "",
                spread(r, "bare_rate") + f" load: {r[0]['tool']}"),
            row("S1 ingest accepted/s", f"{median(r, 'ingest_rate'):.0f}", ">= 3000",
                spread(r, "ingest_rate")),
            row("S1 ratio ingest/bare", f"{ratio:.2f}", ">= 0.50", spread(r, "ratio", "{:.2f}")),
            row("S1 python generator vs bare, req/s", f"{median(r, 'bare_python_rate'):.0f}",
                "", "the S2/S4/S5 generator's ceiling"),
        ]
    if "S2" in results:
        r = results["S2"]
        lines += [
            row("S2 rate (half of S1 ingest)", f"{median(r, 'rate'):.0f}/s", "",
                f"achieved bare {median(r, 'bare_achieved'):.0f}/s, "
                f"ingest {median(r, 'ingest_achieved'):.0f}/s"),
            row("S2 bare p50 / p99, ms",
                f"{median(r, 'bare_p50_ms'):.2f} / {median(r, 'bare_p99_ms'):.2f}", "",
                spread(r, "bare_p99_ms", "{:.1f}")),
            row("S2 ingest p50 / p99, ms",
                f"{median(r, 'ingest_p50_ms'):.2f} / {median(r, 'ingest_p99_ms'):.2f}", "",
                spread(r, "ingest_p99_ms", "{:.1f}")),
            row("S2 p99 ratio ingest/bare", f"{median(r, 'p99_ratio'):.2f}", "<= 2.0",
                spread(r, "p99_ratio", "{:.2f}")),
        ]
    if "S3" in results:
        r = results["S3"]
        lines += [
            row("S3 workers, messages applied/s", f"{median(r, 'worker_rate'):.0f}", ">= 1500",
                f"{r[0]['messages']} msgs" + spread(r, "worker_rate")),
            row("S3 raw psycopg loop, messages/s", f"{median(r, 'raw_rate'):.0f}", "",
                spread(r, "raw_rate")),
            row("S3 ratio workers/raw", f"{median(r, 'ratio'):.2f}", ">= 1.5",
                spread(r, "ratio", "{:.2f}")),
        ]
    if "S4" in results:
        r = results["S4"]
        peak = r[len(r) // 2]["peak_rss_mb"]
        lines += [
            row(f"S4 {r[0]['deliveries']} deliveries, s until all applied",
                f"{median(r, 'seconds'):.1f}", "",
                spread(r, "seconds", "{:.1f}") + f" posting took {median(r, 'post_seconds'):.1f}"
                f" s ({median(r, 'accept_rate'):.0f}/s)"),
            row("S4 peak RSS, MB", ", ".join(f"{k} {v:.0f}" for k, v in sorted(peak.items())),
                "", "largest process of each role"),
        ]
    if "S5" in results:
        f = results["S5"]
        start, end = f["rss_start_mb"], f["rss_end_mb"]
        lines += [
            row(f"S5 {f['deliveries']} deliveries at {f['rate']:.0f}/s",
                f"max queued {f['max_queued']:.0f}, final {f['final_queued']:.0f}",
                "lag back to 0", f"drained {f['drain_after_last_post_s']:.1f} s after the last"
                f" post; 1 run"),
            row("S5 RSS start -> end, MB",
                ", ".join(f"{k} {start.get(k, 0):.0f}->{end.get(k, 0):.0f}" for k in sorted(end)),
                "no growth", ""),
        ]
    return lines
