"""The Celery side: `celery -A worker worker` finds `app` here."""

from refunds.settings import Settings
from worker.celery_app import make_celery
from worker.tasks import register_tasks

settings = Settings.from_env()
app = make_celery(settings)
apply_delivery = register_tasks(app, settings)

__all__ = ["app", "apply_delivery", "settings"]
