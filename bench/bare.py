"""The baseline for S1/S2: a Flask route that answers 202 and does nothing else, served by the
same gunicorn settings as the ingest (`gunicorn -c python:ingest.gunicorn_config
"bench.bare:create_app()"`)."""

from __future__ import annotations

from flask import Flask


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/genstore")
    def receive() -> tuple[str, int]:
        return "", 202

    return app
