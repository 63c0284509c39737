"""Putting a raw delivery on the queue; used by the ingest, retries and dead-letter requeues."""

from __future__ import annotations

from celery import Celery

from refunds.delivery import RawDelivery
from worker.celery_app import TASK_NAME


def publish(app: Celery, delivery: RawDelivery) -> None:
    """Fail fast (no publish retries): the caller answers 503 so Genstore retries later."""
    app.send_task(TASK_NAME, args=[delivery.to_wire()], retry=False, **display(delivery))


def display(delivery: RawDelivery) -> dict[str, str]:
    """How the task shows in worker logs, task events and Flower: ids, topic and shop only,
    never the body (it holds customer contact details)."""
    return {
        "shadow": f"{TASK_NAME}[{delivery.topic or 'no-topic'} {delivery.shop}]",
        "argsrepr": f"(delivery_id={delivery.delivery_id!r}, topic={delivery.topic!r}, "
        f"shop={delivery.shop!r}, body_bytes={len(delivery.body)})",
        "kwargsrepr": "{}",
    }
