"""Read API over refunds (scope read_refunds)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify, request

from ingest.auth import require_scope
from ingest.services import services
from refunds import queries
from refunds.tokens import READ_REFUNDS
from schemas.api import RefundView

bp = Blueprint("refunds", __name__)


@bp.get("/refunds/<refund_id>")
@require_scope(READ_REFUNDS)
def get_refund(refund_id: str) -> tuple[Response, int]:
    with services().sessions() as session:
        try:
            found = queries.refund(refund_id, shop=request.args.get("shop"), session=session)
        except queries.AmbiguousRefund as ambiguous:
            return jsonify(error="ambiguous_refund", shops=ambiguous.shops), 409
        if found is None:
            return jsonify(error="not_found"), 404
        return jsonify(_view(found)), 200


@bp.get("/orders/<order_id>/refunds")
@require_scope(READ_REFUNDS)
def order_refunds(order_id: str) -> Response:
    with services().sessions() as session:
        rows = queries.refunds_for_order(order_id, shop=request.args.get("shop"), session=session)
        return jsonify(refunds=[_view(row) for row in rows])


@bp.get("/refunds")
@require_scope(READ_REFUNDS)
def list_refunds() -> tuple[Response, int]:
    args = request.args
    try:
        since = args.get("updated_since")
        limit = int(args.get("limit", "100"))
        with services().sessions() as session:
            page = queries.refunds_page(
                session=session,
                order_id=args.get("order_id"),
                status=args.get("status"),
                updated_since=_utc(since) if since else None,
                limit=limit,
                cursor=args.get("cursor"),
            )
            refunds = [_view(row) for row in page.refunds]
    except ValueError as error:
        return jsonify(error="bad_request", detail=str(error)), 400
    return jsonify(refunds=refunds, next_cursor=page.next_cursor), 200


def _utc(text: str) -> datetime:
    """ISO-8601; a time without an offset is read as UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _view(row: object) -> dict[str, object]:
    return RefundView.model_validate(row).model_dump(mode="json")
