"""Read API over refunds (scope read_refunds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from desk.auth import require_scope, visible_shop
from ingest.errors import error
from ingest.services import services
from refunds import queries, search
from refunds.flags import open_rules
from refunds.models import Refund
from refunds.tokens import READ_REFUNDS
from schemas.api import RefundView

bp = Blueprint("refunds", __name__)


# `path:` so ids containing "/" can be fetched. A later route under a refund
# (`/refunds/<path:refund_id>/events`) still gets its own requests: werkzeug prefers the rule
# with more static parts, so only an id that itself ends in "/events" would be shadowed.
@bp.get("/refunds/<path:refund_id>")
@require_scope(READ_REFUNDS)
def get_refund(refund_id: str) -> tuple[Response, int]:
    with services().sessions() as session:
        found = refund_or_error(refund_id, shop=visible_shop(request.args.get("shop")),
                                session=session)
        if isinstance(found, tuple):
            return found
        [view] = render_refunds([found], session=session)
        return jsonify(view), 200


def refund_or_error(
    refund_id: str, *, shop: str | None, session: Session
) -> Refund | tuple[Response, int]:
    """The refund, or the error answer: 404 when there is none, 409 naming the shops when the
    id exists in several and no shop was given."""
    try:
        found = queries.refund(refund_id, shop=shop, session=session)
    except queries.AmbiguousRefund as ambiguous:
        return error(409, "ambiguous_refund",
                     "the refund id exists in several shops; name one with ?shop=",
                     shops=ambiguous.shops)
    if found is None:
        return error(404, "not_found", "no refund with this id")
    return found


def render_refunds(rows: Sequence[Refund], *, session: Session) -> list[dict[str, object]]:
    """Refunds as the API returns them (SPEC "The refund as the API returns it"), each with
    its open flags' rules: one query for all of them."""
    flags = open_rules([(row.shop, row.refund_id) for row in rows], session=session)
    return [_view(row, flags.get((row.shop, row.refund_id), [])) for row in rows]


@bp.get("/orders/<path:order_id>/refunds")
@require_scope(READ_REFUNDS)
def order_refunds(order_id: str) -> tuple[Response, int]:
    return _page(request.args, order_id=order_id)


@bp.get("/refunds")
@require_scope(READ_REFUNDS)
def list_refunds() -> tuple[Response, int]:
    return _page(request.args)


def _page(args: MultiDict[str, str], order_id: str | None = None) -> tuple[Response, int]:
    """One page of refunds as `{"refunds", "next_cursor"}` (the order's, when one is given,
    whatever the query string says), or a 400 naming the bad parameter."""
    try:
        filters = search.RefundFilters.from_text(args)
        if order_id is not None:
            filters = replace(filters, order_id=order_id)
        with services().sessions() as session:
            page = search.refunds_page(
                session=session, shop=visible_shop(args.get("shop")), filters=filters,
                limit=parse_limit(args.get("limit")), cursor=args.get("cursor"))
            refunds = render_refunds(page.refunds, session=session)
    except queries.BadParameter as bad:
        return error(400, "bad_request", str(bad))
    return jsonify(refunds=refunds, next_cursor=page.next_cursor), 200


def parse_limit(text: str | None) -> int:
    """The `limit` parameter (default 100, also when blank, as a form leaves an empty field,
    and as every filter reads an empty value); BadParameter for anything but a whole
    number."""
    stripped = (text or "").strip()
    if not stripped:
        return queries.DEFAULT_PAGE
    if not (stripped.isascii() and stripped.lstrip("-").isdigit()) or len(stripped) > 9:
        raise queries.BadParameter(
            f"limit must be a whole number from 1 to {queries.MAX_PAGE}")
    return int(stripped)


def _view(row: Refund, flags: list[str]) -> dict[str, object]:
    view = RefundView.model_validate(row).model_copy(update={"flags": flags})
    return view.model_dump(mode="json")
