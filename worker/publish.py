"""Putting a raw delivery on the queue; used by the ingest and by dead-letter requeues."""

from __future__ import annotations

from celery import Celery

from refunds.delivery import RawDelivery
from worker.celery_app import TASK_NAME


def publish(app: Celery, delivery: RawDelivery) -> None:
    """Fail fast (no publish retries): the caller answers 503 so Genstore retries later."""
    app.send_task(
        TASK_NAME,
        args=[delivery.to_wire()],
        retry=False,
        shadow=f"{TASK_NAME}[{delivery.topic or 'no-topic'} {delivery.shop}]",
    )
