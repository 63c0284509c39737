"""The batch form of the task (`REFUND_SINK_BATCH_SIZE` > 1): the worker's main process
gathers queued deliveries (celery-batches) and a pool process hands each batch to the runner
(worker.runner), which applies it in one transaction.

Each message is acknowledged, or put back, as the runner says; a batch whose pool process
dies or times out goes back to the queue whole; a redelivered message is applied alone, so a
poison message takes no innocent one with it more than once and is caught by the start
counter."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Any

from celery import Celery, Task
from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest, consume_queue
from celery_batches.trace import apply_batches_task

from broker.app import TASK_NAME
from refunds.settings import Settings
from worker.runner import Disposal, Runner, TaskMessage, Verdict, retry_publisher
from worker.task_events import task_event

log = logging.getLogger("refund_sink.worker")


class DeliveryBatches(Batches):  # type: ignore[misc]
    """celery-batches' task class, with acks, rejects and task events per message."""

    time_limit: int

    def Strategy(self, task: Task, app: Celery, consumer: Any) -> Any:
        """Built again on every consumer (re)start. Celery clears the event loop's timers when
        the broker connection drops, which kills the flush timer celery-batches started once:
        without a new one, a part-filled batch would wait for the visibility timeout. Requests
        buffered on the lost channel can no longer be acked (Celery drops its own reserved
        requests the same way); their messages come back from Redis: kombu restores them from
        `unacked`, and the ledger's sweeper publishes again any a fetch had not yet recorded
        there (`broker.consume`)."""
        dropped = len(list(consume_queue(self._buffer))) + len(list(consume_queue(self._pending)))
        if dropped:
            log.warning("broker connection restarted: %d buffered deliveries left to come "
                        "back from Redis", dropped)
        self._tref = None
        return super().Strategy(task, app, consumer)

    def flush(self, requests: Collection[Request]) -> None:
        fresh = [r for r in requests if not r.delivery_info.get("redelivered")]
        redelivered = [[r] for r in requests if r.delivery_info.get("redelivered")]
        for group in [fresh, *redelivered] if fresh else redelivered:
            self._submit(group)

    def _submit(self, requests: list[Request]) -> None:
        started = time.monotonic()
        for request in requests:
            request.send_event("task-received", name=request.name, args=request.argsrepr,
                               kwargs=request.kwargsrepr,
                               retries=request.request_dict.get("retries", 0))

        def on_return(outcomes: dict[str, Verdict] | None) -> None:
            runtime = time.monotonic() - started
            for request in requests:
                verdict = None if outcomes is None else outcomes.get(request.id)
                if verdict is None or verdict.outcome == Disposal.REQUEUE:
                    request.reject(requeue=True)  # sends the task-rejected event
                else:
                    request.acknowledge()
                    kind, fields = task_event(verdict)  # Flower: succeeded, failed or retried
                    request.send_event(kind, runtime=runtime, **fields)

        def on_error(failure: Any) -> None:
            """The pool process died or hit the hard time limit: return the whole batch."""
            reason = getattr(getattr(failure, "type", None), "__name__", repr(failure))
            log.error("a batch of %d deliveries did not finish (%s); returning it to the queue",
                      len(requests), reason)
            on_return(None)

        self._pool.apply_async(
            apply_batches_task,
            (self, ([SimpleRequest.from_request(r) for r in requests],), 0, None),
            callback=on_return,
            error_callback=on_error,
            timeout=self.time_limit,
            soft_timeout=max(1, self.time_limit - 5),
        )


def register_batch_task(app: Celery, settings: Settings) -> Task:
    runner: Runner | None = None

    @app.task(name=TASK_NAME, base=DeliveryBatches, bind=True,  # type: ignore[untyped-decorator]
              flush_every=settings.batch_size, flush_interval=settings.batch_wait_ms / 1000,
              time_limit=settings.task_time_limit)
    def apply_deliveries(self: Task, requests: list[SimpleRequest]) -> dict[str, Verdict]:
        nonlocal runner
        runner = runner or Runner(settings, retry_publisher(self))
        return runner.run([TaskMessage(r.id, r.request_dict.get("retries", 0), r.args)
                           for r in requests])

    return apply_deliveries
