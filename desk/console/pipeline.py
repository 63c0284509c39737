"""The pipeline's health for operators: queue depth and oldest queued age, the unsettled
ledger, the spool, dead letters waiting by reason, messages applied per minute over the last
hour, each worker's last heartbeat on this host, and each shop's last reconcile run; read
the way /metrics and /readyz read them. `/desk/pipeline/figures` is the figures alone, which
the page fetches every 10 s (htmx); without JavaScript the page shows them as of its loading.

Redis not answering is a figure ("broker unreachable"), never an error page: that is when
an operator opens this page."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from broker.wire import delivery_of
from desk.auth import visible_shop
from desk.console.charts import Chart, bar_chart
from ingest.services import Services, services
from refunds import pipeline, reconcile_runs
from worker.observability import heartbeats

bp = Blueprint("pipeline", __name__)

REFRESH_SECONDS = 10


@dataclass(frozen=True)
class BrokerFigures:
    queue_depth: int
    oldest_queued_seconds: float  # 0 when the queue is empty
    unsettled: int  # ledger entries: published, not yet applied or dead-lettered
    oldest_unsettled_seconds: float


@dataclass(frozen=True)
class Heartbeat:
    pid: int
    name: str  # `<pid>@<host>`, the heartbeat file's name
    age_seconds: float


@dataclass(frozen=True)
class Figures:
    broker: BrokerFigures | None  # None: Redis did not answer
    spool_pending: int
    spool_quarantined: int
    dead_by_reason: dict[str, int]
    applied: Chart
    applied_last_hour: int
    workers: list[Heartbeat]
    reconcile: list[reconcile_runs.LastRun]
    read_at: datetime


@bp.get("/pipeline")
def page() -> ResponseReturnValue:
    found = services()
    return render_template("desk/pipeline.html", figures=figures(found),
                           refresh_seconds=REFRESH_SECONDS, flower_url=found.settings.flower_url)


@bp.get("/pipeline/figures")
def fragment() -> ResponseReturnValue:
    return render_template("desk/pipeline_figures.html", figures=figures(services()))


def figures(found: Services) -> Figures:
    now = datetime.now(UTC)
    shop = visible_shop(None)
    with found.sessions() as session:
        minutes = pipeline.applied_per_minute(session=session, now=now, shop=shop)
        dead = pipeline.dead_by_reason(session=session, shop=shop)
        reconciled = [run for run in reconcile_runs.last_runs(session=session)
                      if shop in (None, run.shop)]
    chart = bar_chart("Applied per minute, last hour (UTC)",
                      [(entry.minute.strftime("%H:%M"), entry.count, str(entry.count))
                       for entry in minutes])
    return Figures(broker=broker_figures(found, now.timestamp()),
                   spool_pending=found.spool.count(),
                   spool_quarantined=len(found.spool.quarantined()), dead_by_reason=dead,
                   applied=chart, applied_last_hour=sum(entry.count for entry in minutes),
                   workers=worker_heartbeats(found.settings.heartbeat_dir, time.time()),
                   reconcile=reconciled, read_at=now)


def broker_figures(found: Services, now: float) -> BrokerFigures | None:
    """The queue and the ledger as the live gauges of /metrics read them (ingest/live_metrics),
    or None when Redis does not answer (the probe client gives up within a second)."""
    key = found.settings.redis_key_prefix + found.settings.queue
    try:
        depth, oldest = found.redis.llen(key), found.redis.lindex(key, -1)
        unsettled, first_recorded = found.ledger.size(), found.ledger.oldest()
    except redis.RedisError:
        return None
    return BrokerFigures(int(depth), _queued_seconds(oldest, now) if oldest else 0.0,
                         unsettled, max(0.0, now - first_recorded) if first_recorded else 0.0)


def _queued_seconds(message: bytes | str, now: float) -> float:
    """Seconds since the ingest received the delivery in a queued message (0 for a message
    that is not one of the sink's)."""
    try:
        return max(0.0, now - delivery_of(message).received_at.timestamp())
    except ValueError:
        return 0.0


def worker_heartbeats(directory: str, now: float) -> list[Heartbeat]:
    """This host's workers by pid, each with the age of its last heartbeat (a file touched on
    every Celery heartbeat once the worker is ready); one that stopped meanwhile is left out."""
    found = []
    for pid, path in sorted(heartbeats(directory).items()):
        try:
            beaten = path.stat().st_mtime
        except FileNotFoundError:
            continue
        found.append(Heartbeat(pid, path.name, max(0.0, now - beaten)))
    return found
