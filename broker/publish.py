"""Putting a raw delivery on the queue; used by the ingest, the spool and dead-letter requeues.
The ledger entry travels with it (`broker.transport`)."""

from __future__ import annotations

from celery import Celery

from broker.app import TASK_NAME
from broker.wire import to_wire
from refunds.delivery import RawDelivery


def publish(app: Celery, delivery: RawDelivery) -> str:
    """Fail fast (no publish retries): the caller spools the delivery or answers 503. Returns
    the task message id."""
    result = app.send_task(TASK_NAME, args=[to_wire(delivery)], retry=False,
                           **display(delivery))
    return str(result.id)


def display(delivery: RawDelivery) -> dict[str, str]:
    """How the task shows in worker logs, task events and Flower: ids, topic and shop only,
    never the body (it holds customer contact details)."""
    return {
        "shadow": f"{TASK_NAME}[{delivery.topic or 'no-topic'} {delivery.shop}]",
        "argsrepr": f"(delivery_id={delivery.delivery_id!r}, topic={delivery.topic!r}, "
        f"shop={delivery.shop!r}, body_bytes={len(delivery.body)})",
        "kwargsrepr": "{}",
    }
