"""The one runner: what a worker does with the task messages it was handed, a list of one
(`REFUND_SINK_BATCH_SIZE=1`) or a batch. Both task forms (worker.tasks) call it, so every
rule below (start counting, retry, dead letter, settling the ledger) has one implementation.

Each message is acknowledged only after its effect, dead letter or retry is committed or
published: the runner returns a verdict per message, and the task form acks it, or puts it
back on the queue for `Disposal.REQUEUE`."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from broker.ledger import Ledger
from broker.publish import display
from broker.wire import MalformedDelivery, from_wire
from refunds.apply import Outcome
from refunds.db import describe
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.settings import Settings
from worker.handling import DeliveryHandler, dead_letter_reason
from worker.redeliveries import StartCounter
from worker.retry import is_contention, is_transient

log = logging.getLogger("refund_sink.worker")


class Disposal(enum.StrEnum):
    """What becomes of a task message besides an `Outcome` of its delivery."""

    REQUEUE = "requeue"  # back to the queue instead of acked
    RETRY = "retry"  # acked: its retry is published
    MALFORMED = "malformed"  # not a message this sink wrote: acked and dropped, loudly


@dataclass(frozen=True)
class Verdict:
    """What became of a task message, and why: for the ack and for the task event Flower
    shows (worker.task_events)."""

    outcome: str  # an `Outcome` value or a `Disposal`
    why: str | None = None  # a dead letter's reason, a retry's cause


@dataclass(frozen=True)
class TaskMessage:
    """A queued task message, whichever task form received it."""

    id: str  # the task message id: kept by a redelivery and a retry
    retries: int  # attempts that failed before this one
    args: Sequence[Any]


class AfterFailure(enum.Enum):
    """What a list that failed as a whole does next."""

    REQUEUE_EACH_ALONE = "requeue each alone"  # out of time: no time left to find the culprit
    RETRY_ALL = "retry all"  # an outage: every delivery waits for its next attempt
    APPLY_EACH_ALONE = "apply each alone"  # one delivery's fault: find and isolate it


def after_failure(error: Exception, size: int) -> AfterFailure:
    if isinstance(error, SoftTimeLimitExceeded) and size > 1:
        return AfterFailure.REQUEUE_EACH_ALONE
    if is_transient(error) and not is_contention(error):
        return AfterFailure.RETRY_ALL
    return AfterFailure.APPLY_EACH_ALONE


# Publishes a retry: (message, delivery, countdown, retries) -> None, raising when it cannot.
PublishRetry = Callable[[TaskMessage, RawDelivery, float, int], None]


class Runner:
    def __init__(self, settings: Settings, publish_retry: PublishRetry):
        self.settings = settings
        self.publish_retry = publish_retry
        self.handler = DeliveryHandler(settings)
        self.starts = StartCounter(settings)
        self.ledger = Ledger(settings)

    def run(self, messages: Sequence[TaskMessage]) -> dict[str, Verdict]:
        """A verdict per message id: an `Outcome` value or a `Disposal`, with why. Never raises
        for a delivery's failure."""
        outcomes: dict[str, Verdict] = {}
        pending: dict[str, tuple[TaskMessage, RawDelivery]] = {}
        for message in messages:
            try:
                pending[message.id] = (message, from_wire(message.args[0]))
            except (MalformedDelivery, IndexError) as error:
                log.error("dropping a queue message this sink did not write: %s", error)
                outcomes[message.id] = Verdict(Disposal.MALFORMED, f"not a delivery: {error}")
        starts = self.starts.start_all(list(pending))
        try:
            for message_id, count in starts.items():
                if count > self.settings.max_redeliveries:
                    message, delivery = pending.pop(message_id)
                    delay = self.handler.on_worker_lost(delivery, lost=count - 1)
                    outcomes[message_id] = self._finish(message, delivery, delay, "worker_lost",
                                                        f"its worker died {count - 1} times")
            outcomes.update(self._apply(list(pending.values())))
        finally:
            self.starts.finish(*starts)  # not reached when the process is killed
        self.ledger.settle(message_id for message_id, verdict in outcomes.items()
                           if verdict.outcome not in (Disposal.REQUEUE, Disposal.RETRY))
        return outcomes

    def _apply(self, batch: list[tuple[TaskMessage, RawDelivery]]) -> dict[str, Verdict]:
        if not batch:
            return {}
        try:
            results = self.handler.handle([delivery for _, delivery in batch])
        except Exception as error:
            return self._after_failure(batch, error)
        return {message.id: Verdict(result.outcome.value, result.reason)
                for (message, _), result in zip(batch, results, strict=True)}

    def _after_failure(
        self, batch: list[tuple[TaskMessage, RawDelivery]], error: Exception
    ) -> dict[str, Verdict]:
        """A list that ran out of time goes back to the queue, its messages to come back one
        per list, each with its own time limit and no attempt counted against it."""
        then = after_failure(error, len(batch))
        if len(batch) > 1:
            event(log, "batch failed", logging.WARNING, deliveries=len(batch),
                  error=describe(error), then=then.value)
        if then is AfterFailure.REQUEUE_EACH_ALONE:
            return {message.id: Verdict(Disposal.REQUEUE) for message, _ in batch}
        if then is AfterFailure.RETRY_ALL or len(batch) == 1:
            return {message.id: self._failed(message, delivery, error)
                    for message, delivery in batch}
        outcomes: dict[str, Verdict] = {}
        for message, delivery in batch:
            try:
                [result] = self.handler.handle([delivery])
                outcomes[message.id] = Verdict(result.outcome.value, result.reason)
            except Exception as own_error:
                outcomes[message.id] = self._failed(message, delivery, own_error)
        return outcomes

    def _failed(self, message: TaskMessage, delivery: RawDelivery, error: Exception) -> Verdict:
        if self.handler.held_for_database(delivery, error):
            return self._retry(message, delivery, self.settings.retry_max_seconds, counted=False,
                               why=describe(error))
        delay = self.handler.on_failure(delivery, error, attempt=message.retries + 1)
        return self._finish(message, delivery, delay, dead_letter_reason(error), describe(error))

    def _finish(self, message: TaskMessage, delivery: RawDelivery, delay: float | None,
                reason: str, cause: str) -> Verdict:
        """Dead-lettered for `reason` (no delay), or tried again after the delay."""
        if delay is None:
            return Verdict(Outcome.DEAD_LETTERED.value, f"{reason}: {cause}")
        return self._retry(message, delivery, delay, counted=True, why=cause)

    def _retry(self, message: TaskMessage, delivery: RawDelivery, delay: float,
               counted: bool, why: str) -> Verdict:
        """The message published again to run after the delay, its attempt counted or not; a
        retry that cannot be published sends the message itself back to the queue."""
        retries = message.retries + 1 if counted else message.retries
        try:
            self.publish_retry(message, delivery, delay, retries)
        except Exception as error:
            event(log, "retry not published", logging.ERROR, delivery_id=delivery.delivery_id,
                  shop=delivery.shop, error=type(error).__name__, then="back to the queue")
            return Verdict(Disposal.REQUEUE)
        return Verdict(Disposal.RETRY, f"retry in {delay:.1f}s: {why}")


def retry_publisher(task: Any) -> PublishRetry:
    """A retry is the same message (same id, so the start counter and the ledger follow it)
    with its count of failed attempts, published to run after the delay; the caller then acks the
    message it holds. Celery's `Task.retry` does the same, but answers a publish it cannot
    make by deleting the message."""

    def publish(message: TaskMessage, delivery: RawDelivery, countdown: float,
                retries: int) -> None:
        task.apply_async(args=list(message.args), task_id=message.id, countdown=countdown,
                         retry=False, retries=retries, **display(delivery))

    return publish
