"""The benchmark (`python -m bench`) on tiny sizes, so its code paths cannot rot. No timing
assertions: each scenario must produce its figures and every delivery must be applied."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import __main__ as bench_main
from bench import costs, report, scenarios
from bench.stack import Config, Stack

pytestmark = pytest.mark.timeout(600)


def tiny() -> scenarios.Sizes:
    sizes = scenarios.Sizes(0.0001)
    sizes.s1_seconds, sizes.s2_seconds, sizes.warmup_seconds = 1.0, 0.5, 0.5
    sizes.s1_python_requests = 100
    return sizes


def test_every_scenario_produces_its_figures_and_applies_every_delivery() -> None:
    # given a private stack and tiny sizes
    sizes = tiny()
    # batches of 4: S3's 20 messages take several commits per process, as 2,000 do at 100
    with Stack(Config(batch_size=4, prefetch=4)) as stack:
        # when each scenario runs once
        results: dict[str, Any] = {
            "machine": report.machine(),
            "versions": report.versions(stack.redis_url, stack.database_url),
            "config": {**vars(stack.config), "scale": sizes.scale, "runs": 1},
            "S1": scenarios.s1(stack, sizes, runs=1),
            "S2": scenarios.s2(stack, sizes, runs=1, rate=40.0),
            "S3": scenarios.s3(stack, sizes, runs=1),
            "S4": scenarios.s4(stack, sizes, runs=1),
            "S5": scenarios.s5(stack, sizes, rate=40.0),
        }
    # then every figure is there, and every delivery was accepted and applied
    s1, s2, s3, s4, s5 = (results[k] for k in ("S1", "S2", "S3", "S4", "S5"))
    assert s1[0]["bare_rate"] > 0 and s1[0]["ingest_rate"] > 0 and s1[0]["ratio"] > 0
    assert s1[0]["ingest_queued"] >= s1[0]["ingest_accepted"] > 0  # wrk drops in-flight ones
    assert all(not math.isnan(s2[0][k]) for k in ("bare_p99_ms", "ingest_p99_ms", "p99_ratio"))
    assert s2[0]["ingest_errors"] == 0
    assert s3[0]["applied"] == s3[0]["raw_applied"] == sizes.s3_messages
    assert s3[0]["dead_letters"] == 0 and s3[0]["worker_rate"] > 0 and s3[0]["raw_rate"] > 0
    assert s4[0]["accepted"] == s4[0]["applied"] == sizes.s4_deliveries
    assert s4[0]["dead_letters"] == 0 and s4[0]["peak_rss_mb"]
    assert s5["applied"] == sizes.s5_deliveries and s5["dead_letters"] == 0
    assert s5["rss_start_mb"] and s5["rss_end_mb"] and s5["final_queued"] == 0
    table = bench_main.render(results)
    for name in ("S1", "S2", "S3", "S4", "S5"):
        assert f"| {name} " in table


def test_the_costs_by_role_are_measured_for_every_role() -> None:
    # given a private stack, batches of 4 and 20 deliveries
    with Stack(Config(batch_size=4, prefetch=4)) as stack:
        # when the costs are measured
        figures = costs.measure(stack, 20)
    # then every delivery went through, and each role's figures are there
    ingest, apply, store = figures["ingest"], figures["apply"], figures["storage"]
    assert ingest["accepted"] == ingest["queued"] == 20 and ingest["errors"] == 0
    assert apply["applied"] == 20 and apply["dead_letters"] == 0
    assert ingest["cpu_ms"]["ingest worker processes"] > 0
    assert apply["cpu_ms"]["worker main"] > 0 and apply["cpu_ms"]["worker pool"] > 0
    assert ingest["redis_calls"] and apply["redis_calls"] and ingest["redis_bytes_per_queued"] > 0
    assert apply["postgres"]["xact_commit"] > 0 and apply["wal_bytes"] > 0
    assert apply["postgres"]["raw_deliveries inserted"] == 1.0
    assert store["tables"]["raw_deliveries"]["rows"] == 20 and store["bytes_per_delivery"] > 0
    assert figures["statements"]["1"] > figures["statements"]["4"] > 0
    assert "| apply | worker pool |" in "\n".join(costs.render(figures))
