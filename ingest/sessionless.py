"""No console session for the webhook. Flask opens the app's session for every request before
the view runs; the console's signed cookie session (`desk.console.session`) builds its signing
serializer each time, about 5% of the ingest's CPU per delivery (issue 15's profile), for a
path that never reads or sets a session. Requests under `/webhooks/` get Flask's null session
instead (never saved, no cookie set); every other path keeps the console's."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SessionInterface, SessionMixin
from flask.wrappers import Response

WEBHOOK_PREFIX = "/webhooks/"


class WebhooksWithoutSession(SessionInterface):
    def __init__(self, inner: SessionInterface):
        self.inner = inner
        self.pickle_based = inner.pickle_based

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        if request.path.startswith(WEBHOOK_PREFIX):
            return self.make_null_session(app)
        return self.inner.open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        self.inner.save_session(app, session, response)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)


def install(app: Flask) -> None:
    """After the console has installed its session interface."""
    app.session_interface = WebhooksWithoutSession(app.session_interface)
