"""The task, in one of its two forms, both under one name so the ingest publishes the same
message either way, and both handing their messages to the one runner (worker.runner)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Reject

from broker.app import TASK_NAME
from refunds.settings import Settings
from worker.batches import register_batch_task
from worker.runner import Disposal, Runner, TaskMessage, retry_publisher
from worker.task_events import task_event

log = logging.getLogger("refund_sink.worker")


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
        verdict = runner.run([message])[message.id]
        if verdict.outcome == Disposal.REQUEUE:  # rejected with requeue: the message comes back
            raise Reject(verdict.outcome, requeue=True)
        kind, fields = task_event(verdict)
        if kind == "task-succeeded":
            return verdict.outcome
        # A dead letter or a retry: its effect is committed, so the message is acknowledged
        # (Ignore), and Flower shows the task failed or retried, not SUCCESS.
        _send_event(self, kind, fields)
        raise Ignore()

    return apply_delivery


def _send_event(task: Task, kind: str, fields: dict[str, Any]) -> None:
    """Best effort: a broker that cannot take the event cannot take the ack either."""
    try:
        task.send_event(kind, retry=False, **fields)
    except Exception as error:
        log.warning("%s event not sent for task %s: %s", kind, task.request.id,
                    type(error).__name__)
