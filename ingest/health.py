"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ingest.services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The SPEC's readiness: 503 naming the broker or the database when one does not answer.
    The body also says whether deliveries are waiting in the spool."""
    broker, database = _broker_ok(), _database_ok()
    body = {
        "broker": "ok" if broker else "unavailable",
        "database": "ok" if database else "unavailable",
        **_spool_state(),
    }
    ready = broker and database
    return jsonify(status="ready" if ready else "unavailable", **body), 200 if ready else 503


@bp.get("/readyz/webhooks")
def webhooks_ready() -> tuple[Response, int]:
    """Can this process accept deliveries durably? Yes while the broker or the spool can take
    them; the database plays no part. The probe for load balancers: taking a spooling ingest
    out of service during a broker or database outage would turn durable 202s into refusals,
    and Genstore gives up after 8 of those."""
    broker = _broker_ok()
    writable = services().spool.writable()
    body = {"broker": "ok" if broker else "unavailable", **_spool_state()}
    if broker or writable:
        return jsonify(status="ready" if broker else "degraded", **body), 200
    return jsonify(status="unavailable", **body), 503


def _spool_state() -> dict[str, object]:
    spooled = services().spool.count()
    return {"spool": "in_use" if spooled else "empty", "spooled": spooled}


def _broker_ok() -> bool:
    try:
        return bool(services().redis.ping())
    except redis.RedisError:
        return False


def _database_ok() -> bool:
    try:
        with services().sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
