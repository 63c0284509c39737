"""The reconcile counters of /metrics, read from `reconcile_runs` at scrape time:

- `refund_sink_reconcile_runs_total{shop,outcome}`: recorded reconcile runs of the shop that
  ended with the outcome (genstore_api.reconcile.Outcome);
- `refund_sink_reconcile_found_total{shop,kind}`: what those runs found, summed over them
  (kind missing, differs, only_local, applied).

They are counts of recorded runs, not of runs this process saw: the reconcile command is a
short-lived process (a CronJob, a loop's round) whose own counters would vanish with it, so
every process that serves /metrics reads the same rows and shows the same figures. A run
that crashed before it was recorded is not counted (its log line says why). Deleting rows
lowers the counters, which Prometheus reads as a reset.

One grouped query a scrape. When the database does not answer, the two families are left out
of that scrape (a log line says why) and the scrape still answers."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.services import Services
from refunds import reconcile_runs
from refunds.db import describe

log = logging.getLogger("refund_sink.metrics")


class ReconcileCollector(Collector):
    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator[Metric]:
        try:
            with self.services.sessions() as session:
                totals = reconcile_runs.totals(session=session)
        except Exception as error:  # the scrape answers without them, whatever the cause
            log.warning("reconcile metrics left out of this scrape: the database did not "
                        "answer: %s", describe(error))
            return
        runs = CounterMetricFamily("refund_sink_reconcile_runs",
                                   "Recorded reconcile runs, by shop and outcome",
                                   labels=["shop", "outcome"])
        found = CounterMetricFamily("refund_sink_reconcile_found",
                                    "Refunds found by recorded reconcile runs (missing, "
                                    "differs, only_local) and applied, by shop",
                                    labels=["shop", "kind"])
        by_kind: dict[tuple[str, str], int] = {}
        for total in totals:
            runs.add_metric([total.shop, total.outcome], total.runs)
            for kind, count in total.found.by_kind().items():
                by_kind[total.shop, kind] = by_kind.get((total.shop, kind), 0) + count
        for (shop, kind), count in by_kind.items():
            found.add_metric([shop, kind], count)
        yield runs
        yield found
