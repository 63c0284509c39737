"""The risk flags: open and acknowledged, by rule (both in the URL), cursor paging, each row
linking to its refund; acknowledge one with the signed-in token's name, through the same
`refunds.flags` calls as GET /flags and POST /flags/<id>/acknowledge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from desk.auth import visible_shop
from desk.console.session import write_required
from desk.refunds_api import parse_limit
from ingest.services import services
from refunds import flags, queries
from refunds.risk_rules import Rule

bp = Blueprint("flags", __name__)

# The filter's fields, in the URL as GET /flags names them; the acknowledge form carries them
# back so the listing shows the same filter afterwards.
FIELDS = ("state", "rule", "shop", "cursor")


@bp.get("/flags")
def listing() -> ResponseReturnValue:
    form = {name: request.args.get(name, "") for name in FIELDS}
    query = {name: value for name, value in form.items() if value and name != "cursor"}
    shown = {"form": form, "query": query, "cursor": form["cursor"],
             "states": flags.STATES, "rules": [rule.value for rule in Rule]}
    with services().sessions() as session:
        try:
            page = flags.flags_page(
                session=session, shop=visible_shop(form["shop"] or None),
                state=form["state"] or None, rule=form["rule"] or None,
                limit=parse_limit(request.args.get("limit")), cursor=form["cursor"] or None)
        except queries.BadParameter as bad:
            return render_template("desk/flags.html", **shown, error=str(bad), rows=[],
                                   next_cursor=None), 400
        return render_template("desk/flags.html", **shown, error=None, rows=page.flags,
                               next_cursor=page.next_cursor)


# `int` matches digits only; an id no row can have is not found, never a database error.
@bp.post("/flags/<int:flag_id>/acknowledge")
@write_required
def acknowledge(flag_id: int) -> ResponseReturnValue:
    with services().sessions.begin() as session:
        flag = flags.acknowledge(flag_id, by=g.holder, shop=visible_shop(None), session=session,
                                 now=datetime.now(UTC))
        if flag is None:
            abort(404, description="No flag with this id.")
        flash(f"Flag {flag_id} ({flag.rule} on refund {flag.refund_id}) acknowledged"
              f" by {flag.acknowledged_by}.", "info")
    back: dict[str, Any] = {name: request.form[name] for name in FIELDS if request.form.get(name)}
    return redirect(url_for(".listing", **back))
