"""The ingest: verify, enqueue, answer 202; the app factory also registers the desk's
blueprints (read API, reports, flags, console).

`gunicorn "ingest:create_app()"` serves it. The factory imports what it assembles inside
itself, as the Flask tutorial's `flaskr/__init__.py` does: importing any module of this
package (the desk uses `ingest.errors` and `ingest.services`) must not pull in every
surface, or the desk would import itself halfway through."""

from __future__ import annotations

from flask import Flask

from refunds.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    import desk
    from broker.app import make_celery
    from desk import console
    from ingest import errors, gunicorn_errors, health, metrics_api, sessionless, webhooks
    from ingest.services import Services
    from ingest.signatures import check_standard_secret
    from refunds import logs

    settings = settings or Settings.from_env()
    logs.configure()
    settings.require_webhook_secret()
    check_standard_secret(settings.standard_webhook_secret)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["refund_sink"] = Services(settings=settings, celery=make_celery(settings))
    for blueprint in (webhooks.bp, *desk.BLUEPRINTS, health.bp, metrics_api.bp):
        app.register_blueprint(blueprint)
    console.install(app, settings)  # the console's session key and CSRF tokens
    sessionless.install(app)  # ... but none opened for the webhook
    errors.install(app)
    gunicorn_errors.install()
    return app


__all__ = ["create_app"]
