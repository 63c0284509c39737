"""The one task: decode the queued delivery and hand it to the core."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from refunds.apply import Outcome
from refunds.delivery import MalformedDelivery, RawDelivery
from refunds.settings import Settings
from worker.celery_app import TASK_NAME
from worker.handling import DeliveryHandler
from worker.publish import display

log = logging.getLogger("refund_sink.worker")


def register_tasks(app: Celery, settings: Settings) -> Task:
    handler = DeliveryHandler(settings)

    @app.task(name=TASK_NAME, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def apply_delivery(self: Task, wire: dict[str, Any]) -> str:
        try:
            delivery = RawDelivery.from_wire(wire)
        except MalformedDelivery as error:
            log.error("dropping a queue message this sink did not write: %s", error)
            return "malformed"
        try:
            return handler.handle(delivery).value
        except Exception as error:
            delay = handler.on_failure(delivery, error, attempt=self.request.retries + 1)
            if delay is None:
                return Outcome.DEAD_LETTERED.value
            raise self.retry(exc=error, countdown=delay, **display(delivery)) from None

    return apply_delivery
