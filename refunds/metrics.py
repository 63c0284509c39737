"""Prometheus counters shared by the ingest and the workers. Under gunicorn and Celery's
prefork pool set PROMETHEUS_MULTIPROC_DIR (the `refund-sink` commands do) so every process's
counts add up in one scrape."""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from refunds.apply import Outcome, Result

ACCEPTED = Counter("refund_sink_deliveries_accepted", "Deliveries answered 202", ["via"])
REJECTED = Counter("refund_sink_deliveries_rejected", "Deliveries refused", ["reason"])
APPLIED = Counter("refund_sink_messages_applied", "Distinct messages recorded")
STALE = Counter("refund_sink_stale_messages", "Applied messages older than the refund's latest")
DUPLICATES = Counter("refund_sink_duplicates", "Deliveries with no effect", ["kind"])
RETRIES = Counter("refund_sink_retries", "Attempts that failed transiently and were retried")
HELD = Counter("refund_sink_held",
               "Attempts that failed while the database did not answer: tried again, not counted")
DEAD_LETTERED = Counter("refund_sink_dead_lettered", "Deliveries dead-lettered", ["reason"])
REQUEUED = Counter("refund_sink_requeued", "Dead letters sent through again")
REPUBLISHED = Counter("refund_sink_republished",
                      "Accepted deliveries whose queue message was lost, published again")
FLAGS_RAISED = Counter("refund_sink_flags_raised", "Risk flags raised", ["rule"])
SPOOL_QUARANTINED = Counter("refund_sink_spool_quarantined",
                            "Spool files that are no delivery, moved to quarantine/")
APPLY_SECONDS = Histogram(
    "refund_sink_apply_seconds", "Time to process one delivery, transaction included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)  # fmt: skip

_DUPLICATE_KIND = {Outcome.DUPLICATE_DELIVERY: "delivery", Outcome.DUPLICATE_MESSAGE: "message"}


def record(result: Result, seconds: float) -> None:
    APPLY_SECONDS.observe(seconds)
    if result.outcome is Outcome.APPLIED:
        APPLIED.inc()
        if result.stale:
            STALE.inc()
    elif result.outcome in _DUPLICATE_KIND:
        DUPLICATES.labels(_DUPLICATE_KIND[result.outcome]).inc()
    elif result.reason:
        DEAD_LETTERED.labels(result.reason).inc()
    count_flags(result.flags)


def count_flags(rules: Iterable[str]) -> None:
    """Flags raised in a committed transaction, one count per flag."""
    for rule in rules:
        FLAGS_RAISED.labels(rule).inc()


def exposition() -> bytes:
    """This process's counters, or all processes' when PROMETHEUS_MULTIPROC_DIR is set."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
