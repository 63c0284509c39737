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
    """Ready when both the broker and the database answer; otherwise name the one that did not."""
    checks = {"broker": _broker_ok(), "database": _database_ok()}
    failed = [name for name, ok in checks.items() if not ok]
    body = {name: "ok" if ok else "unavailable" for name, ok in checks.items()}
    return jsonify(status="unavailable" if failed else "ready", **body), 503 if failed else 200


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
