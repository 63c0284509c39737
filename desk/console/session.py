"""Signing in to the console with an API token, and the session that remembers it.

The session is Flask's signed cookie: HttpOnly, SameSite=Strict, Secure on https (or always,
with REFUND_SINK_DESK_SECURE_COOKIE). It holds the token's database id and the time of
signing in, never the token. Every request checks the token again (`tokens.valid_by_id`): a
revoked or expired token ends the session at once, and so does the session's age reaching
REFUND_SINK_DESK_SESSION_MINUTES, counted on the server from the time in the session (the
cookie's Max-Age only asks the browser to forget it).

The signing key is REFUND_SINK_DESK_SECRET, or one derived from the webhook secrets with
HMAC: every ingest worker of a deployment derives the same key, so each accepts the others'
cookies; changing the webhook secrets (a rotation included) signs everyone out."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask.typing import ResponseReturnValue

from desk.console import csrf
from ingest.services import services
from refunds import tokens
from refunds.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

bp = Blueprint("auth", __name__)
KEY_PURPOSE = b"refund-sink desk session"
# Pages anyone may open: the login form, and the static files it uses.
PUBLIC = frozenset({"console.auth.login", "console.static"})


class SessionCookie(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure whenever the request came over https."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)


def install(app: Flask, settings: Settings) -> None:
    minutes = settings.desk_session_minutes
    app.secret_key = signing_key(settings)
    app.session_interface = SessionCookie()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.desk_secure_cookie,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=minutes),
        DESK_SESSION_SECONDS=minutes * 60,
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by the console's guard only
        WTF_CSRF_TIME_LIMIT=minutes * 60,  # a form stays usable while its session lives
    )
    csrf.init(app)


def signing_key(settings: Settings) -> bytes:
    """REFUND_SINK_DESK_SECRET, else HMAC-SHA256 keyed by the webhook secrets (each of
    GENSTORE_WEBHOOK_SECRET's, then STANDARD_WEBHOOK_SECRET) of a fixed purpose: the same in
    every worker, and the webhook secrets cannot be read back from it."""
    if settings.desk_secret:
        return settings.desk_secret.encode()
    webhook = [*settings.genstore_secrets, settings.standard_webhook_secret or ""]
    return hmac.new("\n".join(webhook).encode(), KEY_PURPOSE, hashlib.sha256).digest()


def guard() -> ResponseReturnValue | None:
    """Before every console request: CSRF on a POST (CSRFError, a 400 page, before anything
    is done), then the signed-in token for every page but the public ones."""
    csrf.protect()
    if request.endpoint in PUBLIC:
        return None
    if not _signed_in():
        login = url_for("console.auth.login")
        if request.headers.get("HX-Request") == "true":
            # htmx would swap the login page into the part it refreshes; it follows this
            # header with a whole-page visit instead, whatever the status
            return "", 401, {"HX-Redirect": login}
        return redirect(login)
    return None


def _signed_in() -> bool:
    """Put the session's token in `g.grant` and `g.holder` when it is still good; otherwise
    end the session, saying why, and return False."""
    token_id, since = session.get("token_id"), session.get("since")
    if not isinstance(token_id, int) or not isinstance(since, int):
        return False
    if time.time() - since >= _lifetime():
        return _sign_out("Your session expired; sign in again.")
    with services().sessions() as db:
        row = tokens.valid_by_id(token_id, session=db)
        if row is None:
            return _sign_out("Your token was revoked or has expired; sign in with another.")
        g.grant, g.holder = tokens.grant(row), tokens.holder(row)
    return True


def _lifetime() -> int:
    seconds: int = current_app.config["DESK_SESSION_SECONDS"]
    return seconds


def _sign_out(message: str) -> bool:
    _fresh_session()
    flash(message, "warning")
    return False


def _fresh_session() -> None:
    session.clear()
    session.permanent = True  # kept as a key in the session, so set again


def write_required(view: Callable[P, R]) -> Callable[P, R]:
    """A write action: a 403 page for a token without write_refunds, even when the form
    is posted directly (the pages show such actions only to tokens that have it)."""

    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        if tokens.WRITE_REFUNDS not in g.grant.scopes:
            abort(403, description="This action needs a token with the write_refunds scope.")
        return view(*args, **kwargs)

    return guarded


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if request.method == "GET":
        return render_template("desk/login.html")
    with services().sessions() as db:
        row = tokens.valid(request.form.get("token", "").strip(), session=db)
        if row is None:
            return render_template(
                "desk/login.html", error="This token is unknown, revoked or expired."), 401
        token_id = row.id
    _fresh_session()  # nothing from before signing in carries over, CSRF token included
    session.update(token_id=token_id, since=int(time.time()))
    return redirect(url_for("console.nav.home"))


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    _fresh_session()
    flash("You are signed out.", "info")
    return redirect(url_for("console.auth.login"))
