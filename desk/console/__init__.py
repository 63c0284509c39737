"""The console: server-rendered pages for people (after-sales, risk, finance, operators) at
`/desk/`, over the same core queries as the JSON API, never over HTTP calls to it.

One parent blueprint, `bp` (url prefix `/desk`, the templates in `desk/templates/desk/` and
the static files in `desk/static/`, served at `/desk/static/`), holds a child blueprint per
page module. The parent's `before_request` (`desk.console.session.guard`) runs for every
page: CSRF on every POST (Flask-WTF, the console only: the webhook and the JSON API do not
use it), then the signed-in token, checked against the database on each request and put in
`flask.g.grant` (so `desk.auth.visible_shop` limits a shop token to its shop) with
`flask.g.holder` (its name, for actions to record). Errors raised in a page (`abort(404)`,
a foreign shop, a missing CSRF token) render `desk/error.html` (errors.py).

How to add a page (part B: dead letters, flags, reports, pipeline):
1. A module here, `desk/console/flags.py`, with `bp = Blueprint("flags", __name__)` and a
   view per route: parse the query (`request.args`; a bad value is `queries.BadParameter`,
   shown in the page with status 400), call one core query in
   `with services().sessions() as session:`, `render_template("desk/flags.html", ...)`.
   A write action is a POST view decorated with `session.write_required`, shown only when
   `can_write()`; its form carries `{{ csrf_field() }}`, and it redirects when done
   (templating.py holds what every template can call).
2. Its template `desk/templates/desk/flags.html`: `{% extends "desk/base.html" %}` and
   `{% block content %}`; give forms, tables and rows `data-testid`s for the browser tests.
3. One line in PAGES below. The navigation (`templating.NAV`) already links `/desk/dead-letters`,
   `/desk/flags`, `/desk/reports` and `/desk/pipeline`.
"""

from __future__ import annotations

from flask import Blueprint, Flask

from desk.console import (
    dead_letters,
    errors,
    flags,
    headers,
    nav,
    orders,
    pipeline,
    refunds,
    reports,
    session,
    templating,
)
from refunds.settings import Settings

bp = Blueprint("console", __name__, url_prefix="/desk", template_folder="../templates",
               static_folder="../static", static_url_path="/static")
bp.before_request(session.guard)
bp.after_request(headers.secure)
errors.install(bp)
templating.install(bp)

PAGES: tuple[Blueprint, ...] = (session.bp, nav.bp, refunds.bp, orders.bp, dead_letters.bp,
                                flags.bp, reports.bp, pipeline.bp)
for page in PAGES:
    bp.register_blueprint(page)


def install(app: Flask, settings: Settings) -> None:
    """The app-wide parts the console needs: the session's signing key and cookie, and
    CSRF tokens (checked only by the console's own `before_request`)."""
    session.install(app, settings)
