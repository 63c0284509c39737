"""What the task does with a delivery and with a failure, kept apart from Celery so it can be
called and tested as plain functions."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from broker.spool_erasure import erase_spooled
from refunds import dead_letters, metrics
from refunds.apply import Outcome, Result, apply_deliveries
from refunds.archive import archive
from refunds.compliance import SpoolErasure
from refunds.db import database_answers, describe, session_factory
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.settings import Settings
from worker.retry import backoff_seconds, is_transient, lost_the_database

log = logging.getLogger("refund_sink.worker")


# How long one answer of the database probe stands for every failure that asks: a batch that
# failed for an outage asks once per delivery.
PROBE_MEMO_SECONDS = 1.0


class DeliveryHandler:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._probed: tuple[float, bool] = (-PROBE_MEMO_SECONDS, True)

    def handle(self, deliveries: Sequence[RawDelivery]) -> list[Result]:
        """All or nothing: one transaction for the whole list (one delivery is a list of
        one). Raises what the database raises, for `on_failure` to classify."""
        started = time.perf_counter()
        with session_factory(self.settings).begin() as session:
            results = apply_deliveries(deliveries, session=session,
                                       naive_tz=self.settings.naive_tz,
                                       rules=self.settings.risk_rules)
        seconds = time.perf_counter() - started  # each delivery waited for the whole list
        for result in results:  # committed: this host's spool files follow the erasure
            if result.spool_erasure is not None:
                self._erase_spooled(result.spool_erasure)
        batch = len(deliveries) if len(deliveries) > 1 else None
        for delivery, result in zip(deliveries, results, strict=True):
            self._report(delivery, result, seconds, batch=batch)
        _summarize(deliveries, results, seconds)
        return results

    def _erase_spooled(self, erasure: SpoolErasure) -> None:
        """After the commit, so a failure here (the spool unwritable) is logged for the
        operator, never taken for a failure of the committed deliveries."""
        try:
            erased = erase_spooled(self.settings.spool_dir, erasure)
        except OSError as error:
            event(log, "compliance erasure in the spool failed", logging.ERROR,
                  shop=erasure.shop, error=describe(error))
            return
        event(log, "compliance erasure in the spool", shop=erasure.shop, spool_files=erased)

    def _report(self, delivery: RawDelivery, result: Result, seconds: float,
                batch: int | None = None) -> None:
        """Metrics for every delivery; its own line at REFUND_SINK_DELIVERY_LOG_LEVEL, or as
        a warning when it became a dead letter (a conflict included)."""
        metrics.record(result, seconds)
        conflict = result.reason == dead_letters.CONFLICT
        dead = result.outcome is Outcome.DEAD_LETTERED
        level = logging.WARNING if dead else self.settings.delivery_log_level
        if not log.isEnabledFor(level):
            return
        name = "delivery conflict" if conflict else _EVENTS[result.outcome]
        event(log, name, level, delivery_id=delivery.delivery_id,
              shop=delivery.shop, refund_id=result.refund_id, reason=result.reason,
              stale=result.stale or None, flags=",".join(result.flags) or None,
              duration_ms=round(seconds * 1000, 2), batch=batch)

    def on_failure(self, delivery: RawDelivery, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None once the delivery is a dead letter."""
        transient = is_transient(error)
        if transient and attempt < self._attempts_allowed(error):
            delay = backoff_seconds(
                attempt, base=self.settings.retry_base_seconds, cap=self.settings.retry_max_seconds
            )
            metrics.RETRIES.inc()
            event(log, "delivery retry", logging.WARNING, delivery_id=delivery.delivery_id,
                  shop=delivery.shop, attempt=attempt, error=describe(error),
                  retry_in_s=round(delay, 2))
            return delay
        return self._dead_letter(delivery, dead_letter_reason(error), describe(error), attempt)

    def _attempts_allowed(self, error: Exception) -> int:
        """REFUND_SINK_MAX_RETRIES; one more when the last attempt lost the database (it may
        have come back just after the failure, before this decision): the delivery is tried
        once more with the database back before it is dead-lettered."""
        return self.settings.max_retries + (1 if lost_the_database(error) else 0)

    def held_for_database(self, delivery: RawDelivery, error: Exception) -> bool:
        """True when the attempt failed because the database does not answer: such an
        attempt does not count against the delivery's retries (an outage must not spend
        them), and the delivery is tried again once the database is back."""
        if not lost_the_database(error) or self._database_answers():
            return False
        metrics.HELD.inc()
        event(log, "delivery held", logging.WARNING, delivery_id=delivery.delivery_id,
              shop=delivery.shop, error=describe(error),
              retry_in_s=self.settings.retry_max_seconds)
        return True

    def _database_answers(self) -> bool:
        probed_at, answered = self._probed
        if time.monotonic() - probed_at >= PROBE_MEMO_SECONDS:
            answered = database_answers(self.settings)
            self._probed = (time.monotonic(), answered)
        return answered

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
                archive([delivery], session=session, now=datetime.now(UTC))
                dead_letters.record(delivery, reason=reason, error=error, attempts=attempt,
                                    session=session)
        except Exception as store_error:
            event(log, "dead letter not stored", logging.ERROR, delivery_id=delivery.delivery_id,
                  shop=delivery.shop, error=describe(store_error))
            return self.settings.retry_max_seconds
        metrics.DEAD_LETTERED.labels(reason).inc()
        event(log, "delivery dead-lettered", logging.ERROR, delivery_id=delivery.delivery_id,
              shop=delivery.shop, reason=reason, attempts=attempt, error=error)
        return None


_EVENTS = {
    Outcome.APPLIED: "delivery applied",
    Outcome.DUPLICATE_DELIVERY: "delivery duplicate",
    Outcome.DUPLICATE_MESSAGE: "delivery duplicate",
    Outcome.DEAD_LETTERED: "delivery dead-lettered",
}


def _summarize(deliveries: Sequence[RawDelivery], results: Sequence[Result],
               seconds: float) -> None:
    """One INFO line per committed list: what it did, counted by outcome. A list of one names
    its delivery, so the one-message form still logs each delivery at INFO."""
    counts = Counter(result.outcome for result in results)
    alone = deliveries[0] if len(deliveries) == 1 else None
    event(log, "deliveries applied", deliveries=len(deliveries),
          applied=counts[Outcome.APPLIED],
          duplicates=counts[Outcome.DUPLICATE_DELIVERY] + counts[Outcome.DUPLICATE_MESSAGE],
          dead_lettered=counts[Outcome.DEAD_LETTERED],
          flags=sum(len(result.flags) for result in results) or None,
          delivery_id=alone and alone.delivery_id, shop=alone and alone.shop,
          refund_id=results[0].refund_id if alone else None,
          duration_ms=round(seconds * 1000, 2))


def dead_letter_reason(error: Exception) -> str:
    """The reason of the dead letter a delivery becomes when its attempt failed with `error`
    and it gets no further attempt."""
    return "retries_exhausted" if is_transient(error) else "internal_error"
