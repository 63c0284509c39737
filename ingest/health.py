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
    """Ready when the broker and the database answer. A broker outage while the spool takes
    deliveries is `degraded` but still 200: taking this ingest out of service then would turn
    durable 202s into refusals."""
    broker, database = _broker_ok(), _database_ok()
    spool = services().spool
    spooled = spool.count()
    body = {
        "broker": "ok" if broker else "unavailable",
        "database": "ok" if database else "unavailable",
        "spool": "in_use" if spooled else "empty",
        "spooled": spooled,
    }
    if not database or not (broker or spool.writable()):
        return jsonify(status="unavailable", **body), 503
    return jsonify(status="ready" if broker and not spooled else "degraded", **body), 200


def _broker_ok() -> bool:
    client = redis.Redis.from_url(
        services().settings.redis_url, socket_connect_timeout=1, socket_timeout=1
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _database_ok() -> bool:
    try:
        with services().sessions() as session:
            session.execute(text("SELECT 1"))
    except Exception:
        return False
    return True
