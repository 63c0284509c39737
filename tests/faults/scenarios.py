"""The scenarios. Each gets a clean database and its own queue, ingest and workers; sends its
deliveries while doing something to the system; waits for the queue to drain; then every
refund is compared with the oracle."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import pulled, traffic
from .load import GENSTORE_ATTEMPTS, Load
from .measure import Result, evaluate, outcomes, truncate, wait_drained
from .sentinel import SentinelRedis
from .stack import (
    SECRET,
    Pipeline,
    Postgres,
    Redis,
    RunSettings,
    scenario_settings,
    wait_until,
)
from .traffic import Delivery


@dataclass
class Context:
    postgres: Postgres
    redis: Redis
    run: RunSettings
    root: Path
    size: float
    seed: int = 2026

    def count(self, full: int, minimum: int = 50) -> int:
        return max(minimum, round(full * self.size))

    def seconds(self, full: float, minimum: float) -> float:
        return max(minimum, full * min(self.size, 1.0))


@dataclass
class Plan:
    """What a scenario sent and what it expects beyond the oracle."""

    deliveries: list[Delivery]
    expected_dead: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    after: Callable[[], str] | None = None  # a note to take once the queue has drained
    genstore_truth: bool = False  # judged against every delivery sent (pulled.evaluate)


Body = Callable[[Context, Pipeline, Load], Plan]


def run_scenario(context: Context, name: str, body: Body) -> Result:
    if name in OWN_REDIS:  # a scenario on a Redis of its own, started and stopped with it
        with OWN_REDIS[name](context.root / name) as own:
            return _run_scenario(replace(context, redis=own), name, body)
    return _run_scenario(context, name, body)


def _run_scenario(context: Context, name: str, body: Body) -> Result:
    settings = scenario_settings(context.postgres.url, context.redis.url,
                                 context.root / "spool", context.run, name)
    truncate(settings)
    logs = context.root / "logs" / name
    logs.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(settings, logs)
    client = context.redis.client()
    try:
        load = Load(pipeline.url, SECRET, **LOADS.get(name, {}))
        started = time.monotonic()
        try:
            plan = body(context, pipeline, load)
        finally:
            load.close()
        problem = wait_drained(settings, client)
        seconds = time.monotonic() - started
        ok = sum(1 for a in load.attempts if 200 <= a.status < 300)
        judge = pulled.evaluate if plan.genstore_truth else evaluate
        result = judge(settings, name, sent=len(load.attempts), ok=ok,
                       accepted=load.accepted(), deliveries=plan.deliveries,
                       expected_dead=plan.expected_dead, seconds=seconds)
        result.notes += plan.notes + ([plan.after()] if plan.after else [])
        result.failures += plan.failures + ([problem] if problem else [])
        result.notes.append(f"published again by the ledger's sweeper: "
                            f"{_log_lines(pipeline, 'delivery republished')}")
        result.notes.append(f"logs: {logs}")
        return result
    finally:
        pipeline.stop()
        _forget(client, settings.redis_key_prefix)
        client.close()


def _forget(client: object, prefix: str) -> None:
    import redis

    assert isinstance(client, redis.Redis)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass


def _in_background(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _steady_traffic(context: Context, load: Load, seed: int, prefix: str, seconds: float,
                    rate: float | None = None) -> tuple[Plan, threading.Thread]:
    """Shuffled refunds sent for `seconds` at a steady rate (50/s at full size unless given),
    from now on in the background: the plan, and the sender to join."""
    rng = random.Random(context.seed + seed)
    per_second = rate or max(10.0, 50 * min(context.size, 1.0))
    deliveries = traffic.shuffled(
        traffic.messages(int(per_second * seconds), rng, prefix), rng)
    return Plan(deliveries), _in_background(lambda: load.send(deliveries, rate=per_second))


def _applied(pipeline: Pipeline) -> int:
    return (outcomes(pipeline.settings) or (0, 0))[0]


def _log_lines(pipeline: Pipeline, text: str) -> int:
    """Lines of the scenario's worker logs that hold text."""
    return sum(
        sum(text in line for line in worker.output().splitlines()) for worker in pipeline.workers
    )


# 1. Worker SIGKILL storm -------------------------------------------------------------------

KILLS = ("child", "worker", "child", "worker", "child")


def kill_storm(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    rng = random.Random(context.seed + 1)
    deliveries = traffic.shuffled(traffic.messages(context.count(5000), rng, "kill"), rng)
    plan = Plan(deliveries)
    sender = _in_background(lambda: load.send(deliveries))
    settings = pipeline.settings
    for number, kind in enumerate(KILLS, start=1):
        mark = len(deliveries) * number // (len(KILLS) + 1)
        wait_until(lambda m=mark: sum(outcomes(settings) or (0, 0)) >= m,  # type: ignore[misc]
                   600, f"kill {number}: {mark} deliveries never processed")
        plan.notes.append(f"kill {number} at {mark} processed: {_kill(pipeline, kind, rng)}")
    sender.join()
    return plan


def _kill(pipeline: Pipeline, kind: str, rng: random.Random) -> str:
    worker = rng.choice(pipeline.live_workers())
    children = worker.children()
    if kind == "child" and children:
        pid = rng.choice(children)
        os.kill(pid, signal.SIGKILL)
        return f"SIGKILL pool process {pid} of {worker.log.stem}"
    worker.kill()
    replacement = pipeline.add_worker()
    return f"SIGKILL whole {worker.log.stem} (main + pool); started {replacement.log.stem}"


# 2. Redis outage --------------------------------------------------------------------------

def redis_outage(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    before, outage, after = (context.seconds(10, 2), context.seconds(30, 4),
                             context.seconds(20, 3))
    start = time.monotonic()
    plan, sender = _steady_traffic(context, load, 2, "redis", before + outage + after)
    time.sleep(before)
    context.redis.stop()
    down = time.monotonic()
    spooled = _watch_spool(pipeline.url, seconds=outage)
    applied_before = _applied(pipeline)
    context.redis.start()
    up = time.monotonic()
    try:
        resumed = wait_until(lambda: _applied(pipeline) > applied_before, 120, "")
        plan.notes.append(f"workers applied deliveries again {resumed:.1f}s after the restart")
    except TimeoutError:
        plan.failures.append("workers applied nothing in the 120s after Redis restarted")
    sender.join()
    during = load.statuses(since=down, until=up)
    plan.notes.append(
        f"Redis stopped at {down - start:.0f}s for {up - down:.0f}s (SIGTERM, restarted on its "
        f"AOF); answers during the outage: {dict(during)}; /readyz spooled up to {spooled}")
    if set(during) != {202} and during:
        plan.failures.append(f"non-202 answers during the Redis outage: {dict(during)}")
    if set(load.statuses()) - {202}:
        plan.failures.append(f"non-202 answers in the scenario: {dict(load.statuses())}")
    return plan


def _watch_spool(url: str, seconds: float) -> int:
    """Poll the ingest's webhook readiness during the outage (200 "degraded" while it spools);
    the most deliveries it reported spooled."""
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz/webhooks", timeout=5) as response:
                most = max(most, int(json.load(response).get("spooled", 0)))
        except (OSError, ValueError):
            pass
        time.sleep(1)
    return most


# 3. PostgreSQL restart --------------------------------------------------------------------

def postgres_restart(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    before, down_for, after = (context.seconds(10, 2), context.seconds(10, 2),
                               context.seconds(20, 3))
    start = time.monotonic()
    plan, sender = _steady_traffic(context, load, 3, "pg", before + down_for + after)
    time.sleep(before)
    context.postgres.stop("fast")
    down = time.monotonic()
    time.sleep(down_for)
    context.postgres.start()
    up = time.monotonic()
    sender.join()
    plan.notes.append(f"PostgreSQL stopped (pg_ctl -m fast) at {down - start:.0f}s, started "
                      f"again {up - down:.0f}s later")
    retry = '"event": "delivery retry"'  # the worker's own event, in both task forms
    plan.after = lambda: (f"worker retries logged: {_log_lines(pipeline, retry)}; "
                          f"answers: {dict(load.statuses())}")
    return plan


# 3b. A long PostgreSQL outage ------------------------------------------------------------

def postgres_outage(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    """Five minutes without the database under steady traffic: the workers stop fetching
    (the breaker), attempts that fail meanwhile are held, not counted, and nothing may end
    as a dead letter."""
    before, down_for, after = (context.seconds(10, 2), context.seconds(300, 20),
                               context.seconds(20, 3))
    rate = 10.0
    plan, sender = _steady_traffic(context, load, 7, "pgo", before + down_for + after, rate)
    time.sleep(before)
    context.postgres.stop("fast")
    time.sleep(down_for)
    context.postgres.start()
    sender.join()
    plan.notes.append(f"PostgreSQL stopped (pg_ctl -m fast) at {before:.0f}s for "
                      f"{down_for:.0f}s under {rate:.0f} deliveries/s")

    def seen() -> str:
        paused = _log_lines(pipeline, "fetching paused")
        resumed = _log_lines(pipeline, "fetching resumed")
        held = _log_lines(pipeline, '"event": "delivery held"')
        return (f"breaker: paused {paused}, resumed {resumed}; attempts held (not counted): "
                f"{held}; answers: {dict(load.statuses())}")

    plan.after = seen
    return plan


# 4. Duplicate storm -----------------------------------------------------------------------

def duplicate_storm(context: Context, _pipeline: Pipeline, load: Load) -> Plan:
    rng = random.Random(context.seed + 4)
    distinct = traffic.messages(context.count(1700), rng, "dup")
    load.send(traffic.tripled(distinct, rng))
    return Plan(distinct, notes=[f"{len(distinct)} distinct deliveries, each sent 3 times"])


# 5. Out-of-order storm --------------------------------------------------------------------

def out_of_order(context: Context, _pipeline: Pipeline, load: Load) -> Plan:
    rng = random.Random(context.seed + 5)
    deliveries = traffic.newest_first(traffic.messages(context.count(5000), rng, "ooo"))
    load.send(deliveries)
    return Plan(deliveries)


# 6. Poison message ------------------------------------------------------------------------

def poison(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    rng = random.Random(context.seed + 6)
    normal = traffic.shuffled(traffic.messages(context.count(1000), rng, "normal"), rng)
    bad = traffic.poison("6666666", "poison-1")
    deliveries = normal[: len(normal) // 2] + [bad] + normal[len(normal) // 2:]
    load.send(deliveries)
    def lost() -> str:
        died = _log_lines(pipeline, "exited with 'signal 9 (SIGKILL)'")  # billiard's line
        return f"pool processes killed by the poison message: {died}"

    return Plan(deliveries, expected_dead={bad.delivery_id: "worker_lost"}, after=lost)


# 7. Sentinel failover ---------------------------------------------------------------------

def sentinel_failover(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    """Steady traffic through a Sentinel group (master, replica, one Sentinel, quorum 1): the
    master is failed over under the running workers, then failed back, once the old one has
    rejoined as a replica, while the workers are being replaced (a backlog on the master: what
    only it held would be lost with it)."""
    group = context.redis
    assert isinstance(group, SentinelRedis)
    before, between, after = (context.seconds(10, 2), context.seconds(35, 25),
                              context.seconds(25, 5))
    start = time.monotonic()
    spooled: list[int] = []
    watcher = _in_background(lambda: spooled.append(
        _watch_spool(pipeline.url, seconds=before + between + after)))
    plan, sender = _steady_traffic(context, load, 8, "sentinel", before + between + after)
    time.sleep(before)
    first = group.group.failover()
    rejoined = group.group.wait_replicated(120)
    time.sleep(max(0.0, start + before + between - 1 - time.monotonic()))
    for worker in pipeline.live_workers():
        worker.stop()
    second = group.group.failover()
    for _ in range(2):
        pipeline.add_worker()
    rejoined_again = group.group.wait_replicated(120)
    sender.join()
    watcher.join()
    plan.notes.append(
        f"SENTINEL FAILOVER at {before:.0f}s: {first}, the old master a replica again "
        f"{rejoined:.0f}s later; workers stopped, failed back at {before + between:.0f}s: "
        f"{second}, new workers started, "
        f"rejoined {rejoined_again:.0f}s later; /readyz spooled up to {max(spooled or [0])}; "
        f"answers: {dict(load.statuses())}")
    if set(load.statuses()) - {202}:
        plan.failures.append(f"non-202 answers in the scenario: {dict(load.statuses())}")
    return plan


# 8. Webhooks lost -------------------------------------------------------------------------

FIRST_UPDATE = "2025-03-01T00:00:00Z"  # the traffic's clock starts here: the reconcile window
LOST_LOAD = {"threads": 32, "retry_delay": 0.05}  # Genstore's 8 attempts, hours apart, in 0.4 s


def webhooks_lost(context: Context, pipeline: Pipeline, load: Load) -> Plan:
    """Steady traffic with the ingest down in the middle, long past Genstore's retries: what
    was sent meanwhile never arrives, including every message of the refunds created then.
    The fake Genstore holds the truth; one `refund-sink reconcile --apply` must bring the
    record to it."""
    before, outage, after = (context.seconds(20, 3), context.seconds(30, 6),
                             context.seconds(20, 3))
    start = time.monotonic()
    plan, sender = _steady_traffic(context, load, 9, "lost", before + outage + after)
    rng = random.Random(context.seed + 90)
    unseen = traffic.shuffled(  # refunds created while the ingest is down, other ids
        traffic.messages(context.count(250, 25), rng, "unseen", first=2_000_000), rng)
    plan.deliveries = plan.deliveries + unseen  # a new list: the sender iterates the old
    time.sleep(before)
    pipeline.stop_ingest()
    down = time.monotonic()
    load.send(unseen, rate=len(unseen) / (outage * 0.8))
    time.sleep(max(0.0, down + outage - time.monotonic()))
    pipeline.start_ingest()
    up = time.monotonic()
    sender.join()
    given_up = len({a.delivery_id for a in load.attempts} - load.accepted())
    unseen_through = len({d.delivery_id for d in unseen} & load.accepted())
    plan.notes.append(
        f"ingest stopped at {down - start:.0f}s for {up - down:.0f}s; deliveries given up "
        f"after {GENSTORE_ATTEMPTS} refused attempts: {given_up} of {len(plan.deliveries)} "
        f"({len(unseen) - unseen_through} of the {len(unseen)} sent only during the outage)")
    client = context.redis.client()
    try:
        problem = wait_drained(pipeline.settings, client)
    finally:
        client.close()
    before_reconcile = pulled.gap(pipeline.settings, plan.deliveries)
    plan.notes.append(f"before the reconcile: {before_reconcile}")
    if problem:
        plan.failures.append(f"before the reconcile: {problem}")
    if before_reconcile.missing == 0:
        plan.failures.append("no refund was missing before the reconcile: it proved nothing")
    fake = pulled.genstore(plan.deliveries)
    operator = pulled.Operator(pipeline.settings, fake, pipeline.log_dir)
    try:
        operator.add_shop()
        began = time.monotonic()
        report, error = operator.reconcile(since=FIRST_UPDATE)
        if report is None:
            plan.failures.append(error)
        else:
            plan.notes.append(
                f"reconcile --apply ({time.monotonic() - began:.0f}s, {len(fake.requests)} "
                f"requests): {len(report['checked_orders'])} orders checked, missing "
                f"{len(report['missing'])}, differs {len(report['differs'])}, only_local "
                f"{len(report['only_local'])}, applied {report['applied']}")
    finally:
        fake.stop()
    plan.genstore_truth = True

    def forget_shop() -> str:
        operator.remove_shop()
        return f"shop {pulled.SHOP} removed after the run (later scenarios share the database)"

    plan.after = forget_shop
    return plan


LOADS: dict[str, dict[str, Any]] = {
    "webhooks-lost": LOST_LOAD,
}

OWN_REDIS: dict[str, Callable[[Path], SentinelRedis]] = {
    "sentinel-failover": SentinelRedis,
}

SCENARIOS: dict[str, Body] = {
    "kill-storm": kill_storm,
    "redis-outage": redis_outage,
    "postgres-restart": postgres_restart,
    "postgres-outage": postgres_outage,
    "duplicate-storm": duplicate_storm,
    "out-of-order": out_of_order,
    "poison": poison,
    "sentinel-failover": sentinel_failover,
    "webhooks-lost": webhooks_lost,
}
