"""S1-S5. Each returns a dict of named figures (one run); __main__ takes medians over runs."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench import load, rawloop
from bench.monitor import Sampler
from bench.payloads import Signed, deliveries
from bench.stack import Stack
from broker.app import make_celery
from broker.publish import publish
from refunds.delivery import RawDelivery
from refunds.settings import Settings

Figures = dict[str, Any]


@dataclass
class Sizes:
    scale: float = 1.0
    s1_seconds: float = field(init=False)
    s2_seconds: float = field(init=False)
    s3_messages: int = field(init=False)
    s4_deliveries: int = field(init=False)
    s5_deliveries: int = field(init=False)
    s1_python_requests: int = field(init=False)
    warmup_seconds: float = 3.0  # workers starting before S4/S5 send

    def __post_init__(self) -> None:
        self.s1_seconds = max(1.0, round(10 * self.scale))
        self.s2_seconds = max(1.0, 10 * self.scale)
        self.s3_messages = max(20, int(20_000 * self.scale))
        self.s4_deliveries = max(20, int(50_000 * self.scale))
        self.s5_deliveries = max(20, int(200_000 * self.scale))
        self.s1_python_requests = max(100, int(30_000 * self.scale))


def _signed(stack: Stack, count: int) -> list[Signed]:
    return list(deliveries(count, secrets.token_hex(3), stack.secret))


def _raw(signed: list[Signed]) -> list[bytes]:
    return [s.request_bytes("bench") for s in signed]


# -- S1 ---------------------------------------------------------------------------------------
def s1(stack: Stack, sizes: Sizes, runs: int) -> list[Figures]:
    """Max accepted/s: wrk, closed loop, against the bare route, then the ingest; plus the
    Python generator against the bare route, to show it can outrun the ingest (S4 uses it)."""
    requests = _raw(_signed(stack, 2000))
    results: list[Figures] = [{} for _ in range(runs)]
    use_wrk = load.have_wrk()
    for name, app in (("bare", "bench.bare:create_app()"), ("ingest", "ingest:create_app()")):
        proc, address = stack.start_http(app)
        try:
            for run in range(runs):
                stack.reset()
                if use_wrk:
                    got = load.run_wrk(f"http://{address}/webhooks/genstore", requests,
                                       sizes.s1_seconds, connections=32, threads=1,
                                       workdir=stack.tmp)
                else:
                    many = requests * max(1, int(sizes.s1_seconds * 4000 / len(requests)))
                    got = load.run_python(address, many, processes=2, connections=16)
                results[run][f"{name}_rate"] = got.rate
                results[run][f"{name}_errors"] = got.errors
                results[run][f"{name}_gen_cpu_share"] = got.generator_cpu / got.seconds
                results[run]["tool"] = got.tool
                if name == "ingest":
                    results[run]["ingest_queued"] = stack.queue_depth()
                    results[run]["ingest_accepted"] = got.accepted
                else:
                    count = sizes.s1_python_requests
                    py = load.run_python(address, (requests * (count // len(requests) + 1))[:count],
                                         processes=2, connections=16)
                    results[run]["bare_python_rate"] = py.rate
        finally:
            stack.stop(proc)
    for figures in results:
        figures["ratio"] = figures["ingest_rate"] / figures["bare_rate"]
    return results


# -- S2 ---------------------------------------------------------------------------------------
def s2(stack: Stack, sizes: Sizes, runs: int, rate: float) -> list[Figures]:
    """p50/p99 ack latency at a fixed open-loop rate, both routes, Python generator."""
    count = max(20, int(rate * sizes.s2_seconds))
    results: list[Figures] = [{"rate": rate} for _ in range(runs)]
    for name, app in (("bare", "bench.bare:create_app()"), ("ingest", "ingest:create_app()")):
        proc, address = stack.start_http(app)
        try:
            for run in range(runs):
                stack.reset()
                requests = _raw(_signed(stack, count))
                load.run_python(address, requests[: max(10, count // 10)], processes=2,
                                connections=64, rate=rate)  # warm-up
                got = load.run_python(address, requests, processes=2, connections=64, rate=rate)
                results[run][f"{name}_p50_ms"] = load.percentile(got.latencies, 0.50) * 1000
                results[run][f"{name}_p99_ms"] = load.percentile(got.latencies, 0.99) * 1000
                results[run][f"{name}_achieved"] = got.accepted / got.seconds
                results[run][f"{name}_errors"] = got.errors
        finally:
            stack.stop(proc)
    for figures in results:
        figures["p99_ratio"] = figures["ingest_p99_ms"] / figures["bare_p99_ms"]
    return results


# -- S3 ---------------------------------------------------------------------------------------
def fill_queue(stack: Stack, signed: list[Signed]) -> float:
    """Publish the deliveries as the ingest would; returns publishes/s."""
    settings = Settings.from_env(stack.env())
    app = make_celery(settings)
    now = datetime.now(UTC)
    started = time.perf_counter()
    for item in signed:
        headers = {k.lower(): v for k, v in item.headers.items()}
        publish(app, RawDelivery.from_request(item.body, headers, now))
    return len(signed) / (time.perf_counter() - started)


# Commits are told apart by `processed_at`, the transaction's time (one per batch).
SPAN_RATE = """
WITH commits AS (SELECT processed_at AS at, count(*) AS applied FROM deliveries GROUP BY 1),
     start AS (SELECT at FROM commits ORDER BY at OFFSET %(processes)s - 1 LIMIT 1)
SELECT coalesce(sum(applied) FILTER (WHERE commits.at > start.at), 0),
       extract(epoch FROM max(commits.at) - start.at)
FROM commits, start GROUP BY start.at
"""


def apply_span_rate(stack: Stack) -> float:
    """Messages/s from the moment every worker process has committed once to the last commit:
    the messages committed after it over the time between. Worker start-up and each process's
    first batch (begun before the span) are not counted, so the figure neither gains nor loses
    by the batch size. NaN with fewer commits than processes."""
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(SPAN_RATE, {"processes": stack.config.worker_concurrency}).fetchone()
    if row is None or not row[1]:
        return float("nan")
    return int(row[0]) / float(row[1])


def s3(stack: Stack, sizes: Sizes, runs: int) -> list[Figures]:
    n = sizes.s3_messages
    results: list[Figures] = []
    for _ in range(runs):
        stack.reset()
        signed = _signed(stack, n)
        publish_rate = fill_queue(stack, signed)
        worker = stack.start_workers()
        try:
            stack.wait_applied(n, timeout=600 + n / 50)
        finally:
            stack.stop(worker)
        counts = stack.counts()
        worker_rate = apply_span_rate(stack)
        stack.reset()
        raw_rate = rawloop.run(stack.database_url, signed, stack.config.worker_concurrency)
        raw_counts = stack.counts()
        results.append({
            "messages": n, "worker_rate": worker_rate, "raw_rate": raw_rate,
            "ratio": worker_rate / raw_rate, "publish_rate": publish_rate,
            "applied": counts["refund_messages"], "dead_letters": counts["dead_letters"],
            "raw_applied": raw_counts["refund_messages"],
        })
    return results


# -- S4 ---------------------------------------------------------------------------------------
def _mb(value: int) -> float:
    return value / 2**20


def rss_table(sampler: Sampler, which: dict[int, int]) -> dict[str, float]:
    """MB per process role ('celery child' etc.): the largest among processes of that role."""
    table: dict[str, float] = {}
    for pid, rss in which.items():
        name = sampler.names.get(pid, str(pid))
        table[name] = max(table.get(name, 0.0), _mb(rss))
    return table


def s4(stack: Stack, sizes: Sizes, runs: int) -> list[Figures]:
    n = sizes.s4_deliveries
    results: list[Figures] = []
    for _ in range(runs):
        stack.reset()
        requests = _raw(_signed(stack, n))
        http, address = stack.start_http()
        worker = stack.start_workers()
        assert stack.redis_proc is not None
        try:
            time.sleep(sizes.warmup_seconds)  # workers up
            with Sampler([http.pid, worker.pid, stack.redis_proc.pid]) as sampler:
                started = time.perf_counter()
                posted = load.run_python(address, requests, processes=2, connections=8)
                post_seconds = time.perf_counter() - started
                stack.wait_applied(n, timeout=900 + n / 20)
                seconds = time.perf_counter() - started
        finally:
            stack.stop(http)
            stack.stop(worker)
        counts = stack.counts()
        results.append({
            "deliveries": n, "seconds": seconds, "post_seconds": post_seconds,
            "accept_rate": posted.accepted / post_seconds, "end_to_end_rate": n / seconds,
            "accepted": posted.accepted, "errors": posted.errors,
            "applied": counts["deliveries"], "dead_letters": counts["dead_letters"],
            "peak_rss_mb": rss_table(sampler, sampler.peak),
        })
    return results


# -- S5 ---------------------------------------------------------------------------------------
def s5(stack: Stack, sizes: Sizes, rate: float) -> Figures:
    """Steady open-loop rate; RSS at start (after the first 10% of the run) and end; lag."""
    n = sizes.s5_deliveries
    stack.reset()
    requests = _raw(_signed(stack, n))
    http, address = stack.start_http()
    worker = stack.start_workers()
    assert stack.redis_proc is not None
    redis = stack.redis()
    probes = {"queued": lambda: float(redis.llen(stack.queue)),
              "unacked": lambda: float(redis.hlen("unacked")),
              "applied": lambda: float(stack.applied())}
    try:
        time.sleep(sizes.warmup_seconds)
        with Sampler([http.pid, worker.pid, stack.redis_proc.pid], interval=2.0,
                     probes=probes) as sampler:
            warm = max(10, n // 10)
            load.run_python(address, requests[:warm], processes=1, connections=32, rate=rate)
            sampler.mark_start()
            sampler.sample()
            posted = load.run_python(address, requests[warm:], processes=1, connections=32,
                                     rate=rate)
            drained = stack.wait_applied(n, timeout=900 + n / 20)
            time.sleep(2.5)
            sampler.sample()
    finally:
        stack.stop(http)
        stack.stop(worker)
    counts = stack.counts()
    lags = [values.get("queued", 0.0) for _, values in sampler.series]
    return {
        "deliveries": n, "rate": rate, "achieved": posted.accepted / posted.seconds,
        "errors": posted.errors, "drain_after_last_post_s": drained,
        "applied": counts["deliveries"], "dead_letters": counts["dead_letters"],
        "rss_start_mb": rss_table(sampler, sampler.first),
        "rss_end_mb": rss_table(sampler, sampler.last),
        "max_queued": max(lags) if lags else 0.0, "final_queued": lags[-1] if lags else 0.0,
        "lag_series": [(round(t, 1), v.get("queued"), v.get("applied"))
                       for t, v in sampler.series],
    }
