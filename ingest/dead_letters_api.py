"""Dead letters over HTTP (scope write_refunds): list them, requeue one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ingest.auth import require_scope
from ingest.services import services
from refunds import dead_letters, metrics
from refunds.tokens import WRITE_REFUNDS
from schemas.api import DeadLetterView

bp = Blueprint("dead_letters", __name__)


@bp.get("/dead-letters")
@require_scope(WRITE_REFUNDS)
def list_dead_letters() -> Response:
    with services().sessions() as session:
        letters = dead_letters.find(
            session=session, reason=request.args.get("reason"), state=request.args.get("state")
        )
        views = [DeadLetterView.model_validate(row).model_dump(mode="json") for row in letters]
    return jsonify(dead_letters=views)


@bp.post("/dead-letters/<int:letter_id>/requeue")
@require_scope(WRITE_REFUNDS)
def requeue(letter_id: int) -> tuple[Response, int]:
    found = services()
    result = dead_letters.requeue(found.sessions, found.publish, ids=[letter_id])
    metrics.REQUEUED.inc(len(result.requeued))
    if result.not_found:
        return jsonify(error="not_found"), 404
    if result.failed:
        return jsonify(error="unavailable"), 503
    if result.already_resolved:
        return jsonify(status="already_resolved", id=letter_id), 200
    return jsonify(status="requeued", id=letter_id), 202
