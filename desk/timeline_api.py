"""A refund's timeline over HTTP (scope read_refunds): for after-sales service, every delivery
that reached the refund, with what it did and where it came from."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from desk.auth import require_scope, visible_shop
from desk.refunds_api import refund_or_error, render_refunds
from ingest.services import services
from refunds.timeline import timeline
from refunds.tokens import READ_REFUNDS
from schemas.timeline import EventView

bp = Blueprint("timeline", __name__)


@bp.get("/refunds/<path:refund_id>/events")
@require_scope(READ_REFUNDS)
def refund_events(refund_id: str) -> tuple[Response, int]:
    with services().sessions() as session:
        found = refund_or_error(refund_id, shop=visible_shop(request.args.get("shop")),
                                session=session)
        if isinstance(found, tuple):
            return found
        [refund] = render_refunds([found], session=session)
        events = [EventView.model_validate(event).model_dump(mode="json")
                  for event in timeline(found.shop, found.refund_id, session=session)]
    return jsonify(refund=refund, events=events), 200
