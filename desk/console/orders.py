"""The order page: every refund of one order, and their totals by status and currency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from desk.auth import visible_shop
from ingest.services import services
from refunds import flags, queries, search
from refunds.models import Refund

bp = Blueprint("orders", __name__)


@dataclass(frozen=True)
class Total:
    status: str
    currency: str | None
    count: int
    amount: Decimal  # refunds without a price count, and add nothing


@bp.get("/orders/<path:order_id>")
def order(order_id: str) -> ResponseReturnValue:
    if "\x00" in order_id:
        abort(404, description="No refund has this order id.")
    with services().sessions() as session:
        rows = every_refund(order_id, visible_shop(request.args.get("shop")), session)
        if not rows:
            abort(404, description="No refund has this order id.")
        open_flags = flags.open_rules({(row.shop, row.refund_id) for row in rows},
                                      session=session)
        return render_template("desk/order.html", order_id=order_id, rows=rows,
                               totals=totals(rows), open_flags=open_flags)


def every_refund(order_id: str, shop: str | None, session: Session) -> list[Refund]:
    """All the order's refunds, page after page (an order has a few)."""
    filters = search.RefundFilters(order_id=order_id)
    found: list[Refund] = []
    cursor: str | None = None
    while True:
        page = search.refunds_page(session=session, shop=shop, filters=filters,
                                    limit=queries.MAX_PAGE, cursor=cursor)
        found.extend(page.refunds)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def totals(rows: Iterable[Refund]) -> Sequence[Total]:
    """Count and summed price per (status, currency), exact decimals, sorted."""
    counts: dict[tuple[str, str | None], int] = defaultdict(int)
    amounts: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for row in rows:
        key = (row.status, row.currency)
        counts[key] += 1
        amounts[key] += row.refund_price or Decimal(0)
    return [Total(status, currency, counts[status, currency], amounts[status, currency])
            for status, currency in sorted(counts, key=lambda key: (key[0], key[1] or ""))]
