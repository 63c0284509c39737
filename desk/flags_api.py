"""Risk flags over HTTP: list them a page at a time (scope read_refunds), acknowledge one
(scope write_refunds). A token limited to one shop sees and acknowledges that shop's only."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from desk.auth import require_scope, visible_shop
from desk.refunds_api import parse_limit
from ingest.errors import error
from ingest.services import services
from refunds import flags, queries, tokens
from refunds.tokens import READ_REFUNDS, WRITE_REFUNDS
from schemas.flags import FlagPage, FlagView

bp = Blueprint("flags", __name__)


@bp.get("/flags")
@require_scope(READ_REFUNDS)
def list_flags() -> tuple[Response, int]:
    args = request.args
    try:
        with services().sessions() as session:
            page = flags.flags_page(
                session=session, shop=visible_shop(args.get("shop")), state=args.get("state"),
                rule=args.get("rule"), limit=parse_limit(args.get("limit")),
                cursor=args.get("cursor"))
            answer = FlagPage(flags=[FlagView.model_validate(row) for row in page.flags],
                              next_cursor=page.next_cursor)
    except queries.BadParameter as bad:
        return error(400, "bad_request", str(bad))
    return jsonify(answer.model_dump(mode="json")), 200


# `int` matches digits only; an id no row can have is not found, never a database error.
@bp.post("/flags/<int:flag_id>/acknowledge")
@require_scope(WRITE_REFUNDS)
def acknowledge(flag_id: int) -> tuple[Response, int]:
    # require_scope has checked the bearer token; its row names who acknowledges
    token = request.headers["Authorization"].partition(" ")[2].strip()
    with services().sessions.begin() as session:
        row = tokens.valid(token, session=session)
        if row is None:  # revoked or expired since require_scope read it
            return error(401, "unauthorized", "the token is unknown, revoked or expired")
        flag = flags.acknowledge(flag_id, by=tokens.holder(row), shop=visible_shop(None),
                                 session=session, now=datetime.now(UTC))
        if flag is None:
            return error(404, "not_found", "no flag with this id")
        return jsonify(FlagView.model_validate(flag).model_dump(mode="json")), 200
