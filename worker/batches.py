"""Batch mode (`REFUND_SINK_BATCH_SIZE` > 1): the worker's main process gathers queued
deliveries (celery-batches) and a pool process applies each batch in one transaction.

Each message keeps the guarantees of the one-message task: it is acknowledged only after its
effect, dead letter or retry is committed or published; a batch whose pool process dies or
times out goes back to the queue whole; a redelivered message is applied alone, so a poison
message takes no innocent one with it more than once and is caught by the start counter."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request
from celery_batches import Batches, SimpleRequest, consume_queue
from celery_batches.trace import apply_batches_task

from broker.app import TASK_NAME
from broker.ledger import Ledger
from broker.publish import display
from refunds.apply import Outcome
from refunds.delivery import MalformedDelivery, RawDelivery
from refunds.logs import event
from refunds.settings import Settings
from worker.handling import DeliveryHandler, describe
from worker.redeliveries import StartCounter
from worker.retry import is_contention, is_transient

log = logging.getLogger("refund_sink.worker")
REQUEUE = "requeue"  # the outcome that returns a message to the queue instead of acking it
RETRY = "retry"  # the outcome of a message acked because its retry is published


class DeliveryBatches(Batches):  # type: ignore[misc]
    """celery-batches' task class, with acks, rejects and task events per message."""

    time_limit: int

    def Strategy(self, task: Task, app: Celery, consumer: Any) -> Any:
        """Built again on every consumer (re)start. Celery clears the event loop's timers when
        the broker connection drops, which kills the flush timer celery-batches started once:
        without a new one, a part-filled batch would wait for the visibility timeout. Requests
        buffered on the lost channel can no longer be acked (Celery drops its own reserved
        requests the same way); their messages come back from Redis."""
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

        def on_return(outcomes: dict[str, str] | None) -> None:
            runtime = time.monotonic() - started
            for request in requests:
                outcome = None if outcomes is None else outcomes.get(request.id)
                if outcome is None or outcome == REQUEUE:
                    request.reject(requeue=True)  # sends the task-rejected event
                else:
                    request.acknowledge()
                    request.send_event("task-succeeded", result=repr(outcome), runtime=runtime)

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


class BatchRunner:
    """What a pool process does with a batch: outcome by task message id, or REQUEUE."""

    def __init__(self, task: Task, settings: Settings):
        self.task = task
        self.settings = settings
        self.handler = DeliveryHandler(settings)
        self.starts = StartCounter(settings)
        self.ledger = Ledger(settings)

    def run(self, requests: Sequence[SimpleRequest]) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        pending: dict[str, tuple[SimpleRequest, RawDelivery]] = {}
        for request in requests:
            try:
                pending[request.id] = (request, RawDelivery.from_wire(request.args[0]))
            except (MalformedDelivery, IndexError) as error:
                log.error("dropping a queue message this sink did not write: %s", error)
                outcomes[request.id] = "malformed"
        starts = self.starts.start_all(list(pending))
        try:
            for message_id, count in starts.items():
                if count > self.settings.max_redeliveries:
                    request, delivery = pending.pop(message_id)
                    delay = self.handler.on_worker_lost(delivery, lost=count - 1)
                    outcomes[message_id] = self._finish(request, delivery, delay)
            outcomes.update(self._apply(list(pending.values())))
        finally:
            self.starts.finish(*starts)  # not reached when the process is killed
        self.ledger.settle(message_id for message_id, outcome in outcomes.items()
                           if outcome not in (REQUEUE, RETRY))
        return outcomes

    def _apply(self, batch: list[tuple[SimpleRequest, RawDelivery]]) -> dict[str, str]:
        if not batch:
            return {}
        try:
            results = self.handler.handle_batch([delivery for _, delivery in batch])
        except Exception as error:
            return self._after_batch_failure(batch, error)
        return {request.id: result.outcome.value
                for (request, _), result in zip(batch, results, strict=True)}

    def _after_batch_failure(
        self, batch: list[tuple[SimpleRequest, RawDelivery]], error: Exception
    ) -> dict[str, str]:
        """An outage (the database is away) retries every delivery later; a wait on one
        refund's lock, or any other failure, is one delivery's fault, so each is applied alone
        to find and isolate it. A batch that ran out of time has no time left for that: it
        goes back to the queue, and its messages come back one per batch, each with its own
        time limit and no attempt counted against it."""
        if isinstance(error, SoftTimeLimitExceeded) and len(batch) > 1:
            then = "requeue each alone"
        elif is_transient(error) and not is_contention(error):
            then = "retry all"
        else:
            then = "apply each alone"
        event(log, "batch failed", logging.WARNING, deliveries=len(batch),
              error=describe(error), then=then)
        if then == "requeue each alone":
            return {request.id: REQUEUE for request, _ in batch}
        if then == "retry all":
            return {request.id: self._failed(request, delivery, error)
                    for request, delivery in batch}
        outcomes = {}
        for request, delivery in batch:
            try:
                outcomes[request.id] = self.handler.handle(delivery).outcome.value
            except Exception as own_error:
                outcomes[request.id] = self._failed(request, delivery, own_error)
        return outcomes

    def _failed(self, request: SimpleRequest, delivery: RawDelivery, error: Exception) -> str:
        attempt = request.request_dict.get("retries", 0) + 1
        delay = self.handler.on_failure(delivery, error, attempt=attempt)
        return self._finish(request, delivery, delay)

    def _finish(self, request: SimpleRequest, delivery: RawDelivery, delay: float | None) -> str:
        """Dead-lettered (no delay), or published again to run after the delay; a retry that
        cannot be published sends the message itself back to the queue."""
        if delay is None:
            return Outcome.DEAD_LETTERED.value
        try:
            self.task.apply_async(args=[delivery.to_wire()], task_id=request.id,
                                  countdown=delay, retry=False,
                                  retries=request.request_dict.get("retries", 0) + 1,
                                  **display(delivery))
        except Exception as error:
            log.error("delivery %s: cannot publish the retry (%s); returning it to the queue",
                      delivery.delivery_id, type(error).__name__)
            return REQUEUE
        return RETRY


def register_batch_task(app: Celery, settings: Settings) -> Task:
    runner: BatchRunner | None = None

    @app.task(name=TASK_NAME, base=DeliveryBatches, bind=True,  # type: ignore[untyped-decorator]
              flush_every=settings.batch_size, flush_interval=settings.batch_wait_ms / 1000,
              time_limit=settings.task_time_limit)
    def apply_deliveries(self: Task, requests: list[SimpleRequest]) -> dict[str, str]:
        nonlocal runner
        runner = runner or BatchRunner(self, settings)
        return runner.run(requests)

    return apply_deliveries
