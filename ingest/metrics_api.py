"""GET /metrics: Prometheus text, counters of every ingest (and, with a shared
PROMETHEUS_MULTIPROC_DIR, worker) process plus live gauges."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from ingest.live_metrics import live_exposition
from ingest.services import services
from refunds.metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(exposition() + live_exposition(services()), mimetype=CONTENT_TYPE_LATEST)
