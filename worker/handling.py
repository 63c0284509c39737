"""What the task does with a delivery and with a failure, kept apart from Celery so it can be
called and tested as plain functions."""

from __future__ import annotations

import logging

import sqlalchemy.exc

from refunds import dead_letters
from refunds.apply import Outcome, process_delivery
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.settings import Settings
from worker.retry import backoff_seconds, is_transient

log = logging.getLogger("refund_sink.worker")


class DeliveryHandler:
    def __init__(self, settings: Settings):
        self.settings = settings

    def handle(self, delivery: RawDelivery) -> Outcome:
        with session_factory(self.settings).begin() as session:
            outcome = process_delivery(delivery, session=session, naive_tz=self.settings.naive_tz)
        log.info("delivery %s: %s", delivery.delivery_id, outcome.value)
        return outcome

    def on_failure(self, delivery: RawDelivery, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None once the delivery is a dead letter."""
        transient = is_transient(error)
        if transient and attempt < self.settings.max_retries:
            delay = backoff_seconds(
                attempt, base=self.settings.retry_base_seconds, cap=self.settings.retry_max_seconds
            )
            log.warning("delivery %s: attempt %d failed (%s); retrying in %.2fs",
                        delivery.delivery_id, attempt, describe(error), delay)
            return delay
        reason = "retries_exhausted" if transient else "internal_error"
        return self._dead_letter(delivery, reason, describe(error), attempt)

    def on_worker_lost(self, delivery: RawDelivery, lost: int) -> float | None:
        """A poison message: its worker process died on each of its last `lost` starts."""
        error = f"the worker process died {lost} times while applying this delivery"
        return self._dead_letter(delivery, "worker_lost", error, lost)

    def _dead_letter(
        self, delivery: RawDelivery, reason: str, error: str, attempt: int
    ) -> float | None:
        """A dead letter that cannot be written (the database is still down) is not dropped:
        the message is retried at the longest delay until it can be."""
        try:
            with session_factory(self.settings).begin() as session:
                dead_letters.record(delivery, reason=reason, error=error, attempts=attempt,
                                    session=session)
        except Exception as store_error:
            log.error("delivery %s: cannot store dead letter (%s); keeping the message",
                      delivery.delivery_id, describe(store_error))
            return self.settings.retry_max_seconds
        log.error("delivery %s: dead-lettered as %s", delivery.delivery_id, reason)
        return None


def describe(error: BaseException) -> str:
    """One line naming the failure, without SQL parameters (they may hold customer data)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:500]
