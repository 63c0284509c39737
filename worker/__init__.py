"""The Celery side: `celery -A worker worker` (and `flower`) find `app` here.

The app is built from the environment on first access, not at import: the CLI and the tests
import worker modules with settings of their own and must not depend on the process
environment."""

from __future__ import annotations

from typing import Any

_BUILT = ("app", "apply_delivery", "settings")


def __getattr__(name: str) -> Any:
    if name not in _BUILT:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    from worker import observability

    observability.prepare_metrics_dir()  # before anything imports prometheus_client
    from broker.app import make_celery
    from refunds.settings import Settings
    from worker import breaker, sweeper
    from worker.tasks import register_tasks

    settings = Settings.from_env()
    observability.install(settings)
    sweeper.install(settings)
    breaker.install(settings)
    app = make_celery(settings)
    globals().update(settings=settings, app=app, apply_delivery=register_tasks(app, settings))
    return globals()[name]
