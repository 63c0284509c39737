"""What the request handlers share: settings, the Celery client, a Redis client for the
probes, database sessions, and the spool that takes deliveries while the broker is away."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis
from celery import Celery
from flask import current_app

from broker.ledger import Ledger
from broker.publish import Publisher, publisher
from broker.redis_client import redis_client
from broker.spool import Drainer, Spool
from refunds.db import SessionFactory, session_factory
from refunds.delivery import RawDelivery
from refunds.settings import Settings

# After a failed publish, go straight to the spool for this long instead of waiting on a
# broker that is down for every request; the drainer keeps probing it meanwhile.
BROKER_BACKOFF_SECONDS = 2.0


@dataclass
class Services:
    settings: Settings
    celery: Celery
    publisher: Publisher = field(init=False)
    ledger: Ledger = field(init=False)
    redis: redis.Redis = field(init=False)  # /readyz and /metrics: answers within a second
    spool: Spool = field(init=False)
    drainer: Drainer = field(init=False)
    broker_down_until: float = 0.0

    def __post_init__(self) -> None:
        self.publisher = publisher(self.celery)  # connects on first publish
        self.ledger = Ledger(self.settings)  # read by /metrics
        self.redis = redis_client(self.settings, timeout=1, connect_timeout=1)
        self.spool = Spool(self.settings.spool_dir)
        self.drainer = Drainer(self.spool, self.publish)
        if self.spool.count():
            self.drainer.ensure_running()

    @property
    def sessions(self) -> SessionFactory:
        """Created on first use: the webhook path never needs a database."""
        return session_factory(self.settings)

    def publish(self, delivery: RawDelivery) -> None:
        self.publisher.publish(delivery)
        self.broker_down_until = 0.0

    def accept(self, delivery: RawDelivery) -> str:
        """Queue the delivery, or spool it if the broker cannot take it. Returns where it went;
        raises only when neither could (the caller answers 503)."""
        if time.monotonic() >= self.broker_down_until:
            try:
                self.publish(delivery)
                return "queue"
            except Exception:
                self.broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        self.spool.put(delivery)
        self.drainer.ensure_running()
        return "spool"


def services() -> Services:
    found: Services = current_app.extensions["refund_sink"]
    return found
