"""The task, in one of its two forms, both under one name so the ingest publishes the same
message either way, and both handing their messages to the one runner (worker.runner)."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

from broker.app import TASK_NAME
from refunds.settings import Settings
from worker.batches import register_batch_task
from worker.runner import Disposal, Runner, TaskMessage, retry_publisher


def register_tasks(app: Celery, settings: Settings) -> Task:
    """One message per task when REFUND_SINK_BATCH_SIZE is 1, else the batch form."""
    if settings.batch_size > 1:
        return register_batch_task(app, settings)
    runner: Runner | None = None

    # Retries are published by the runner (worker.runner.retry_publisher), which also
    # enforces REFUND_SINK_MAX_RETRIES: Celery's own limit is off.
    @app.task(name=TASK_NAME, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
    def apply_delivery(self: Task, *args: Any) -> str:
        nonlocal runner
        runner = runner or Runner(settings, retry_publisher(self))
        message = TaskMessage(self.request.id, self.request.retries, args)
        outcome = runner.run([message])[message.id]
        if outcome == Disposal.REQUEUE:  # rejected with requeue: the message comes back
            raise Reject(outcome, requeue=True)
        return outcome

    return apply_delivery
