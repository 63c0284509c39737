"""The console's home, and the quick search that takes any id to its page."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from desk.auth import visible_shop
from ingest.services import services
from refunds import queries
from refunds.search import RefundFilters, refunds_page

bp = Blueprint("nav", __name__)

@bp.get("/")
def home() -> ResponseReturnValue:
    return render_template("desk/home.html")


@bp.get("/search")
def search() -> ResponseReturnValue:
    """`q` as a refund id (its page; a choice of shops when several have it), else an order
    id (the order's page), else a customer id (the customer's refunds)."""
    wanted = request.args.get("q", "").strip()
    if not wanted or "\x00" in wanted:
        return redirect(url_for("console.refunds.listing"))
    shop = visible_shop(request.args.get("shop"))
    with services().sessions() as session:
        try:
            found = queries.refund(wanted, shop=shop, session=session)
        except queries.AmbiguousRefund as ambiguous:
            return render_template("desk/search.html", q=wanted, shops=ambiguous.shops)
        if found is not None:
            return redirect(url_for("console.refunds.refund", shop=found.shop,
                                    refund_id=found.refund_id))
        if _any(RefundFilters(order_id=wanted), shop, session):
            return redirect(url_for("console.orders.order", order_id=wanted, shop=shop))
        if _any(RefundFilters(customer_id=wanted), shop, session):
            return redirect(url_for("console.refunds.listing", customer_id=wanted, shop=shop))
    return render_template("desk/search.html", q=wanted, shops=[]), 404


def _any(filters: RefundFilters, shop: str | None, session: Session) -> bool:
    return bool(refunds_page(session=session, shop=shop, filters=filters,
                                     limit=1).refunds)
