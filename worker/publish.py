"""Putting a raw delivery on the queue; used by the ingest, the spool, dead-letter requeues and
the ledger's sweeper."""

from __future__ import annotations

import uuid

from celery import Celery

from refunds.delivery import RawDelivery
from worker.celery_app import TASK_NAME
from worker.ledger import Ledger


class Publisher:
    def __init__(self, celery: Celery, ledger: Ledger):
        self.celery, self.ledger = celery, ledger

    def publish(self, delivery: RawDelivery, message_id: str | None = None) -> str:
        """Record the delivery in the ledger, then queue it; returns the task message id.
        Fails fast (no publish retries): the caller spools it or answers 503."""
        message_id = message_id or str(uuid.uuid4())
        wire = delivery.to_wire()
        self.ledger.record(message_id, wire)
        # A failed send leaves the entry: the message may have reached Redis all the same
        # (a lost reply), and if not, the sweeper's copy is a duplicate the dedupe absorbs.
        self.celery.send_task(TASK_NAME, args=[wire], task_id=message_id,
                              retry=False, **display(delivery))
        return message_id


def display(delivery: RawDelivery) -> dict[str, str]:
    """How the task shows in worker logs, task events and Flower: ids, topic and shop only,
    never the body (it holds customer contact details)."""
    return {
        "shadow": f"{TASK_NAME}[{delivery.topic or 'no-topic'} {delivery.shop}]",
        "argsrepr": f"(delivery_id={delivery.delivery_id!r}, topic={delivery.topic!r}, "
        f"shop={delivery.shop!r}, body_bytes={len(delivery.body)})",
        "kwargsrepr": "{}",
    }
