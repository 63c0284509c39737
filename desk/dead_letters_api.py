"""Dead letters over HTTP (scope write_refunds): list them a page at a time, requeue one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from desk.auth import require_scope, visible_shop
from desk.refunds_api import parse_limit
from ingest.errors import error
from ingest.services import services
from refunds import dead_letters, metrics, queries
from refunds.tokens import WRITE_REFUNDS
from schemas.api import DeadLetterView

bp = Blueprint("dead_letters", __name__)


@bp.get("/dead-letters")
@require_scope(WRITE_REFUNDS)
def list_dead_letters() -> tuple[Response, int]:
    args = request.args
    try:
        with services().sessions() as session:
            page = queries.dead_letters_page(
                session=session, shop=visible_shop(args.get("shop")), reason=args.get("reason"),
                state=args.get("state"), limit=parse_limit(args.get("limit")),
                cursor=args.get("cursor"))
            views = [DeadLetterView.model_validate(row).model_dump(mode="json")
                     for row in page.dead_letters]
    except queries.BadParameter as bad:
        return error(400, "bad_request", str(bad))
    return jsonify(dead_letters=views, next_cursor=page.next_cursor), 200


# `int` matches digits only; an id no row can have is not found, never a database error.
@bp.post("/dead-letters/<int:letter_id>/requeue")
@require_scope(WRITE_REFUNDS)
def requeue(letter_id: int) -> tuple[Response, int]:
    found = services()
    with found.sessions() as session:
        letter = queries.dead_letter(letter_id, shop=visible_shop(None), session=session)
    if letter is None:
        return error(404, "not_found", "no dead letter with this id")
    result = dead_letters.requeue(found.sessions, found.publish, ids=[letter_id])
    metrics.REQUEUED.inc(len(result.requeued))
    if result.not_found:
        return error(404, "not_found", "no dead letter with this id")
    if result.failed:
        return error(503, "unavailable", "the broker did not take the delivery; it stays dead")
    if result.already_resolved:
        return jsonify(status="already_resolved", id=letter_id), 200
    return jsonify(status="requeued", id=letter_id), 202
