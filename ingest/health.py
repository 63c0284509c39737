"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ingest.services import services
from refunds import reconcile_runs

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """The SPEC's readiness: 503 naming the broker or the database when one does not answer.
    The body also says whether deliveries are waiting in the spool, and each shop's last
    reconcile while the database answers (detail only: a failed reconcile never makes the
    sink unready)."""
    broker, database = _broker_ok(), _database_ok()
    body = {
        "broker": "ok" if broker else "unavailable",
        "database": "ok" if database else "unavailable",
        **_spool_state(),
    }
    reconciled = _last_reconciles() if database else None
    if reconciled is not None:
        body["reconcile"] = reconciled
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


def _last_reconciles() -> dict[str, dict[str, str]] | None:
    """Each shop's last recorded reconcile run: when it finished, how it ended; None when the
    database does not answer (unknown, so left out)."""
    try:
        with services().sessions() as session:
            runs = reconcile_runs.last_runs(session=session)
    except Exception:
        return None
    return {run.shop: {"at": run.finished_at.isoformat(), "outcome": run.outcome}
            for run in runs}


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
