"""Errors of the console as pages (the JSON API keeps its JSON errors): a bad or missing CSRF
token (400), a write action without write_refunds (403), nothing here or in another shop
(404). The page says what went wrong in fixed words, never the request's input."""

from __future__ import annotations

from flask import Blueprint, render_template
from werkzeug.exceptions import HTTPException

from desk.auth import OtherShop
from ingest.errors import code_and_detail

TITLES = {
    400: "The request was refused",
    403: "Not allowed",
    404: "Not found",
}


def install(bp: Blueprint) -> None:
    @bp.errorhandler(HTTPException)
    def http_error(raised: HTTPException) -> tuple[str, int]:
        status = raised.code or 500
        return page(status, _explained(raised, status))

    @bp.errorhandler(OtherShop)
    def other_shop(_: OtherShop) -> tuple[str, int]:
        return page(404, "Nothing here for this token.")


def page(status: int, detail: str) -> tuple[str, int]:
    title = TITLES.get(status) or code_and_detail(status, "error")[1].capitalize()
    return render_template("desk/error.html", status=status, title=title, detail=detail), status


def _explained(raised: HTTPException, status: int) -> str:
    """The view's own description (fixed text: `abort(403, description=...)`, Flask-WTF's
    "The CSRF token is missing."), else the status's words."""
    if raised.description and raised.description != type(raised).description:
        return raised.description
    return code_and_detail(status, raised.name)[1].capitalize() + "."
