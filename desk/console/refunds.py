"""The refund pages: the search (filters in the URL, saved views, cursor paging, CSV of the
page shown), one refund (its lines, fund changes, flags and timeline), and the raw bodies of
one delivery, the only page that shows a customer's contact details."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from desk.auth import visible_shop
from desk.console import records
from desk.console.session import write_required
from desk.refunds_api import parse_limit
from ingest.services import services
from refunds import archive, flags, queries, search
from refunds.csv_safe import to_csv
from refunds.models import Refund
from refunds.state import IN_PROGRESS
from refunds.timeline import timeline

bp = Blueprint("refunds", __name__)

# The search form's fields, in the URL as GET /refunds names them.
FIELDS = (*search.FILTERS, "shop", "limit")
CSV_HEADER = ("shop", "id", "order_id", "status", "refund_price", "currency", "customer_id",
              "created_at", "updated_at", "refunded_at", "events_applied", "open_flags", "note")


@dataclass(frozen=True)
class SavedView:
    """A named search: its filters."""

    label: str
    testid: str
    filters: Mapping[str, str]


def saved_views(now: datetime) -> list[SavedView]:
    """The saved views as filters; the times are fixed when the link is drawn, so a shared
    link shows what it showed then."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [
        SavedView("In progress over 24 h", "view-stuck",
                  {"status": IN_PROGRESS, "created_to": _iso(now - timedelta(hours=24))}),
        SavedView("Refunded today", "view-refunded-today", {"refunded_from": _iso(midnight)}),
        SavedView("Fund changed", "view-fund-changed", {"fund_changed": "true"}),
        SavedView("Flagged", "view-flagged", {"flagged": "true"}),
    ]


@bp.get("/refunds")
def listing() -> ResponseReturnValue:
    form = {name: request.args.get(name, "") for name in FIELDS}
    query = {name: value for name, value in form.items() if value}  # the links keep it
    cursor = request.args.get("cursor", "")
    shown = {"form": form, "query": query, "cursor": cursor,
             "shown_query": {**query, "cursor": cursor} if cursor else query,
             "views": saved_views(datetime.now(UTC))}
    with services().sessions() as session:
        try:
            page, open_flags = _page(request.args, session)
        except queries.BadParameter as bad:
            return render_template("desk/refunds.html", **shown, error=str(bad), rows=[],
                                   next_cursor=None, open_flags={}), 400
        return render_template("desk/refunds.html", **shown, error=None, rows=page.refunds,
                               next_cursor=page.next_cursor, open_flags=open_flags)


@bp.get("/refunds.csv")
def download() -> ResponseReturnValue:
    """The page the same query shows, as CSV (formula-safe text cells)."""
    with services().sessions() as session:
        try:
            page, open_flags = _page(request.args, session)
        except queries.BadParameter as bad:
            abort(400, description=str(bad))
        rows = [(row.shop, row.refund_id, row.order_id, row.status, row.refund_price,
                 row.currency, row.customer_id, row.created_at, row.updated_at,
                 row.refunded_at, row.events_applied,
                 " ".join(open_flags.get((row.shop, row.refund_id), [])), row.note)
                for row in page.refunds]
    return Response(to_csv(CSV_HEADER, rows), mimetype="text/csv", headers={
        "Content-Disposition": 'attachment; filename="refunds.csv"'})


def _page(args: MultiDict[str, str], session: Session
          ) -> tuple[search.Page, dict[tuple[str, str], list[str]]]:
    """The page of refunds the query names, and their open flags' rules."""
    page = search.refunds_page(
        session=session, shop=visible_shop(args.get("shop")),
        filters=search.RefundFilters.from_text(args), limit=parse_limit(args.get("limit")),
        cursor=args.get("cursor") or None)
    keys = {(row.shop, row.refund_id) for row in page.refunds}
    return page, flags.open_rules(keys, session=session)


@bp.get("/refunds/<shop>/<path:refund_id>")
def refund(shop: str, refund_id: str) -> ResponseReturnValue:
    with services().sessions() as session:
        found = _refund(shop, refund_id, session)
        return render_template(
            "desk/refund.html", refund=found, line_columns=records.columns(found.line_items),
            flags=records.refund_flags(found.shop, found.refund_id, session=session),
            events=timeline(found.shop, found.refund_id, session=session))


@bp.post("/refunds/<shop>/<path:refund_id>/acknowledge")
@write_required
def acknowledge(shop: str, refund_id: str) -> ResponseReturnValue:
    """Acknowledge one of the refund's flags (form field `flag_id`), then show the refund."""
    flag_id = request.form.get("flag_id", "")
    with services().sessions.begin() as session:
        found = _refund(shop, refund_id, session)
        own = {flag.id for flag in records.refund_flags(found.shop, found.refund_id,
                                                        session=session)}
        if not (flag_id.isascii() and flag_id.isdigit() and int(flag_id) in own):
            abort(404, description="The refund has no such flag.")
        flags.acknowledge(int(flag_id), by=g.holder, shop=found.shop, session=session,
                          now=datetime.now(UTC))
    flash("Flag acknowledged.", "info")
    return redirect(url_for(".refund", shop=shop, refund_id=refund_id))


@bp.get("/deliveries/<shop>/<path:delivery_id>")
def delivery(shop: str, delivery_id: str) -> ResponseReturnValue:
    """Every body archived under (shop, delivery id), as received (headers as the archive
    keeps them: signatures redacted)."""
    with services().sessions() as session:
        bodies = archive.bodies(visible_shop(shop) or shop, delivery_id, session=session)
        if not bodies:
            abort(404, description="No body is archived under this delivery id.")
        return render_template("desk/delivery.html", shop=shop, delivery_id=delivery_id,
                               bodies=[records.shown_body(body) for body in bodies])


def _refund(shop: str, refund_id: str, session: Session) -> Refund:
    found = queries.refund(refund_id, shop=visible_shop(shop) or shop, session=session)
    if found is None:
        abort(404, description="No refund with this id in this shop.")
    return found


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()

