"""The dead letters: the listing (reason and state in the URL, cursor paging), one letter with
its error, validation errors, headers (signatures redacted when it was recorded) and body,
requeue one, and requeue every dead one matching a reason after a confirmation of how many.

Every page here needs write_refunds, like GET /dead-letters: a letter's body and its errors
can hold a customer's contact details. Requeues go through `refunds.dead_letters.requeue`
and the app's publish, as POST /dead-letters/<id>/requeue does."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from desk.auth import visible_shop
from desk.console.session import write_required
from desk.refunds_api import parse_limit
from ingest.services import services
from refunds import dead_letters, metrics, pipeline, queries
from refunds.models import DeadLetter

bp = Blueprint("dead_letters", __name__)


@dataclass(frozen=True)
class Filter:
    """What the listing and a requeue of all are limited to; empty is any."""

    reason: str
    state: str
    shop: str

    @classmethod
    def of(cls, args: MultiDict[str, str]) -> Filter:
        return cls(args.get("reason", ""), args.get("state", ""), args.get("shop", ""))

    def query(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the filter."""
        return {name: value for name, value in vars(self).items() if value}

    def requeue_query(self) -> dict[str, Any]:
        """The fields a requeue of all keeps: it takes the dead ones, whatever the state
        filter shows."""
        return {name: value for name, value in (("reason", self.reason), ("shop", self.shop))
                if value}

    def check_reason(self) -> str | None:
        """The reason, or None for any; BadParameter for one that is not a reason."""
        if self.reason and self.reason not in dead_letters.REASONS:
            raise queries.BadParameter(f"reason must be one of {', '.join(dead_letters.REASONS)}")
        return self.reason or None


@bp.get("/dead-letters")
@write_required
def listing() -> ResponseReturnValue:
    wanted = Filter.of(request.args)
    cursor = request.args.get("cursor", "")
    shown = {"filter": wanted, "query": wanted.query(), "cursor": cursor,
             "reasons": dead_letters.REASONS, "states": dead_letters.STATES}
    with services().sessions() as session:
        try:
            page = queries.dead_letters_page(
                session=session, shop=visible_shop(wanted.shop or None),
                reason=wanted.reason or None, state=wanted.state or None,
                limit=parse_limit(request.args.get("limit")), cursor=cursor or None)
        except queries.BadParameter as bad:
            return render_template("desk/dead_letters.html", **shown, error=str(bad), rows=[],
                                   next_cursor=None), 400
        return render_template("desk/dead_letters.html", **shown, error=None,
                               rows=page.dead_letters, next_cursor=page.next_cursor)


@bp.get("/dead-letters/<int:letter_id>")
@write_required
def letter(letter_id: int) -> ResponseReturnValue:
    found = _letter(letter_id)
    text, is_json = _readable(found.body)
    return render_template("desk/dead_letter.html", letter=found, body=text, is_json=is_json,
                           headers=sorted(found.headers.items()))


@bp.post("/dead-letters/<int:letter_id>/requeue")
@write_required
def requeue(letter_id: int) -> ResponseReturnValue:
    _letter(letter_id)  # in the token's shop, or 404
    result = _requeue([letter_id])
    if result.already_resolved:
        flash(f"Dead letter {letter_id} was already resolved; nothing was sent.", "info")
    elif result.failed:
        flash(f"The broker did not take dead letter {letter_id}; it stays dead.", "warning")
    else:
        flash(f"Requeued dead letter {letter_id}: it resolves once the worker applies it.",
              "info")
    return redirect(url_for(".letter", letter_id=letter_id))


@bp.route("/dead-letters/requeue-all", methods=["GET", "POST"])
@write_required
def requeue_all() -> ResponseReturnValue:
    """GET: how many dead letters (state dead) match the reason, and a form to send them.
    POST (the reason and the count confirmed): sends them, unless the count changed since;
    then the confirmation again with the new count, nothing sent."""
    source = request.form if request.method == "POST" else request.args
    wanted = Filter(source.get("reason", ""), "", source.get("shop", ""))  # dead ones only
    try:
        reason = wanted.check_reason()
    except queries.BadParameter as bad:
        return _confirmation(wanted, 0, error=str(bad)), 400
    shop = visible_shop(wanted.shop or None)
    if request.method == "GET":
        return _confirmation(wanted, _dead_count(shop, reason))
    with services().sessions() as session:
        ids = [found.id for found in dead_letters.find(
            session=session, shop=shop, reason=reason, state=dead_letters.DEAD, limit=None)]
    confirmed = source.get("count", "")
    if not (confirmed.isascii() and confirmed.isdigit()) or int(confirmed) != len(ids):
        return _confirmation(wanted, len(ids), changed=True), 409
    result = _requeue(ids)
    flash(_summary(result), "info" if not result.failed else "warning")
    return redirect(url_for(".listing", **wanted.requeue_query()))


def _confirmation(wanted: Filter, count: int, *, changed: bool = False,
                  error: str | None = None) -> str:
    return render_template("desk/requeue_all.html", filter=wanted, count=count, changed=changed,
                           error=error, reasons=dead_letters.REASONS)


def _dead_count(shop: str | None, reason: str | None) -> int:
    with services().sessions() as session:
        return sum(pipeline.dead_by_reason(session=session, shop=shop, reason=reason).values())


def _requeue(ids: list[int]) -> dead_letters.RequeueResult:
    found = services()
    result = dead_letters.requeue(found.sessions, found.publish, ids=ids)
    metrics.REQUEUED.inc(len(result.requeued))
    return result


def _summary(result: dead_letters.RequeueResult) -> str:
    """What a requeue of all did, in one line naming the letters."""
    parts = [f"Requeued {len(result.requeued)} dead letter"
             f"{'' if len(result.requeued) == 1 else 's'}"
             + (f": {', '.join(map(str, result.requeued))}." if result.requeued else ".")]
    if result.already_resolved:
        parts.append(f"Already resolved meanwhile: {', '.join(map(str, result.already_resolved))}.")
    if result.failed:
        parts.append(f"The broker did not take {', '.join(map(str, result.failed))}; "
                     "they stay dead.")
    return " ".join(parts)


def _letter(letter_id: int) -> DeadLetter:
    with services().sessions() as session:
        found = queries.dead_letter(letter_id, shop=visible_shop(None), session=session)
        if found is None:
            abort(404, description="No dead letter with this id.")
        session.expunge(found)
        return found


def _readable(body: bytes) -> tuple[str, bool]:
    """The body as text: JSON indented when it parses, else as received (bytes that are not
    UTF-8 shown as U+FFFD)."""
    text = body.decode("utf-8", errors="replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), True
    except ValueError:
        return text, False
