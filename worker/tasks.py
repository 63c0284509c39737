"""The one task: decode the queued delivery and hand it to the core."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import Reject

from broker.app import TASK_NAME
from broker.ledger import Ledger
from broker.publish import display
from refunds.apply import Outcome
from refunds.delivery import MalformedDelivery, RawDelivery
from refunds.settings import Settings
from worker.batches import register_batch_task
from worker.handling import DeliveryHandler
from worker.redeliveries import StartCounter

log = logging.getLogger("refund_sink.worker")


def register_tasks(app: Celery, settings: Settings) -> Task:
    """The one-message task, or its batch form when REFUND_SINK_BATCH_SIZE > 1; both under
    one name, so the ingest publishes the same message either way."""
    if settings.batch_size > 1:
        return register_batch_task(app, settings)
    handler = DeliveryHandler(settings)
    starts = StartCounter(settings)
    ledger = Ledger(settings)

    @app.task(name=TASK_NAME, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def apply_delivery(self: Task, wire: dict[str, Any]) -> str:
        try:
            delivery = RawDelivery.from_wire(wire)
        except MalformedDelivery as error:
            log.error("dropping a queue message this sink did not write: %s", error)
            return "malformed"
        started = starts.start(self.request.id)
        try:
            if started > settings.max_redeliveries:
                lost = handler.on_worker_lost(delivery, lost=started - 1)
                outcome = finish(self, delivery, WorkerLost(delivery.delivery_id), lost)
            else:
                outcome = apply(self, handler, delivery)
        finally:
            starts.finish(self.request.id)  # not reached when the process is killed
        ledger.settle([self.request.id])  # not reached by a retry: it raises
        return outcome

    return apply_delivery


class WorkerLost(Exception):
    """Worker processes died applying this delivery, and its dead letter could not be stored."""


def apply(task: Task, handler: DeliveryHandler, delivery: RawDelivery) -> str:
    try:
        return handler.handle(delivery).outcome.value
    except Exception as error:
        delay = handler.on_failure(delivery, error, attempt=task.request.retries + 1)
        return finish(task, delivery, error, delay)


def finish(task: Task, delivery: RawDelivery, error: Exception, delay: float | None) -> str:
    """Dead-lettered (no delay), or sent round again after the delay."""
    if delay is None:
        return Outcome.DEAD_LETTERED.value
    retry_later(task, delivery, error, delay)


def retry_later(task: Task, delivery: RawDelivery, error: Exception, delay: float) -> NoReturn:
    """Celery answers a retry it cannot publish with Reject(requeue=False), which deletes the
    message; put it back on the queue instead."""
    try:
        raise task.retry(exc=error, countdown=delay, **display(delivery))
    except Reject:
        log.error("delivery %s: cannot publish the retry; returning it to the queue",
                  delivery.delivery_id)
        raise Reject(error, requeue=True) from None
