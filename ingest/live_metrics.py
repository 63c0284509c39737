"""Gauges read at scrape time: queue depth and age, unsettled deliveries, spool size, dead
letters by reason and state. Read live rather than counted, so they are right whichever
process did the work."""

from __future__ import annotations

import time
from collections.abc import Iterator

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from broker.wire import delivery_of
from ingest.reconcile_metrics import ReconcileCollector
from ingest.services import Services
from refunds.models import DeadLetter


class LiveCollector(Collector):
    def __init__(self, services: Services):
        self.services = services

    def collect(self) -> Iterator[Metric]:
        yield from self._queue()
        spool = GaugeMetricFamily("refund_sink_spool_deliveries", "Deliveries in the spool")
        spool.add_metric([], self.services.spool.count())
        yield spool
        yield from self._dead_letters()

    def _queue(self) -> Iterator[Metric]:
        settings, client = self.services.settings, self.services.redis
        up = GaugeMetricFamily("refund_sink_broker_up", "1 if Redis answered this scrape")
        ledger = self.services.ledger
        try:
            key = settings.redis_key_prefix + settings.queue
            depth, oldest = client.llen(key), client.lindex(key, -1)
            unsettled, first_recorded = ledger.size(), ledger.oldest()
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth_metric = GaugeMetricFamily("refund_sink_queue_depth", "Deliveries waiting")
        depth_metric.add_metric([], depth)
        yield depth_metric
        age = GaugeMetricFamily("refund_sink_queue_oldest_age_seconds",
                                "Age of the oldest waiting delivery (0 when none)")
        age.add_metric([], _age(oldest) if oldest else 0.0)
        yield age
        ledger_size = GaugeMetricFamily(
            "refund_sink_unsettled_deliveries",
            "Deliveries published and not yet applied or dead-lettered (the ledger)")
        ledger_size.add_metric([], unsettled)
        yield ledger_size
        ledger_age = GaugeMetricFamily(
            "refund_sink_unsettled_oldest_age_seconds",
            "Time since the oldest unsettled delivery was published (0 when none)")
        ledger_age.add_metric([], time.time() - first_recorded if first_recorded else 0.0)
        yield ledger_age

    def _dead_letters(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("refund_sink_database_up", "1 if the database answered")
        letters = GaugeMetricFamily("refund_sink_dead_letters", "Dead letters",
                                    labels=["reason", "state"])
        try:
            with self.services.sessions() as session:
                query = select(DeadLetter.reason, DeadLetter.state, func.count()).group_by(
                    DeadLetter.reason, DeadLetter.state)
                for reason, state, count in session.execute(query):
                    letters.add_metric([reason, state], count)
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield letters


def _age(message: bytes | str) -> float:
    """Seconds since the ingest received the delivery in a queued kombu message."""
    try:
        received = delivery_of(message).received_at
    except ValueError:
        return 0.0
    return max(0.0, time.time() - received.timestamp())


def live_exposition(services: Services) -> bytes:
    registry = CollectorRegistry()
    registry.register(LiveCollector(services))
    registry.register(ReconcileCollector(services))
    return generate_latest(registry)
