"""The one apply path: raw deliveries (one delivery is a list of one) archived, parsed, claimed
and folded into their refunds, all in the caller's transaction, so each delivery's dedupe
record and its effect commit together.

The outcome of each delivery, and the database afterwards, are those of applying the
deliveries one by one in their order, with a fixed number of multi-row statements per list
instead of a dozen round trips per delivery."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds import claims, dead_letters
from refunds.archive import archive
from refunds.claims import KnownClaim, Settled
from refunds.db import in_pairs, insert_ignore_many
from refunds.delivery import DeliveryKey, RawDelivery
from refunds.models import MessageRecord, Refund
from refunds.recording import Parsed, RefundKey, record_messages
from refunds.state import IN_PROGRESS, fold
from schemas import PayloadRejected, RefundMessage, parse_delivery


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE_DELIVERY = "duplicate_delivery"
    DUPLICATE_MESSAGE = "duplicate_message"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Result:
    """What one delivery did, for logs and metrics once the transaction has committed."""

    outcome: Outcome
    refund_id: str | None = None
    reason: str | None = None  # the dead-letter reason
    stale: bool = False  # applied, but older than the refund's latest message


def apply_deliveries(
    deliveries: Sequence[RawDelivery], *, session: Session, naive_tz: str
) -> list[Result]:
    """One Result per delivery, in the given order.

    A payload that cannot be applied is a dead letter (a Result), not an error; a (shop,
    delivery id) that already had its effect with another body is a `delivery_conflict`
    dead letter. Raises what the database raises (then the whole list is to be tried again).
    Runs in the caller's transaction, never commits."""
    now = datetime.now(UTC)
    archive(deliveries, session=session, now=now)
    results: list[Result] = []
    for run in _runs_of_distinct_keys(deliveries):
        outcomes = _apply_run(list(enumerate(run)), session=session, naive_tz=naive_tz, now=now)
        results.extend(outcomes[index] for index in range(len(run)))
    return results


def _runs_of_distinct_keys(deliveries: Sequence[RawDelivery]) -> list[Sequence[RawDelivery]]:
    """Consecutive runs in which no (shop, delivery id) repeats: a later copy must meet the
    earlier copy's claim, as it would one by one. Almost always a single run."""
    runs: list[Sequence[RawDelivery]] = []
    start, keys = 0, set[DeliveryKey]()
    for index, delivery in enumerate(deliveries):
        if delivery.key in keys:
            runs.append(deliveries[start:index])
            start, keys = index, set[DeliveryKey]()
        keys.add(delivery.key)
    return [*runs, deliveries[start:]] if deliveries else []


def _apply_run(
    items: list[tuple[int, RawDelivery]], *, session: Session, naive_tz: str, now: datetime
) -> dict[int, Result]:
    known = claims.known(session, [delivery.key for _, delivery in items])
    results: dict[int, Result] = {}
    parsed: list[Parsed] = []
    for index, delivery in items:
        if (claim := known.get(delivery.key)) is not None:
            results[index] = _claimed_before(delivery, claim, session=session)
            continue
        try:
            parsed.append(Parsed(index, delivery, parse(delivery, naive_tz=naive_tz)))
        except PayloadRejected as rejected:
            dead_letters.record(delivery, reason=rejected.reason, error=rejected.detail,
                                errors=rejected.errors, session=session)
            results[index] = Result(Outcome.DEAD_LETTERED, reason=rejected.reason)
    results.update(_apply_messages(parsed, session=session, now=now))
    # A delivery that has had its effect closes its dead letter, if it has one.
    dead_letters.resolve_all([delivery for index, delivery in items
                              if results[index].outcome is not Outcome.DEAD_LETTERED],
                             session=session, now=now)
    return results


def parse(delivery: RawDelivery, *, naive_tz: str) -> RefundMessage:
    return parse_delivery(
        delivery.body,
        topic=delivery.topic,
        shop=delivery.shop,
        triggered_at=delivery.triggered_at,
        received_at=delivery.received_at,
        naive_tz=naive_tz,
    )


def _claimed_before(delivery: RawDelivery, claim: KnownClaim, *, session: Session) -> Result:
    """The same body again is a duplicate; another body is a conflict, kept as a dead
    letter."""
    if claim.body_sha256 == delivery.body_sha256:
        return Result(Outcome.DUPLICATE_DELIVERY, claim.refund_id)
    dead_letters.record_conflict(delivery, claim.body_sha256, session=session)
    return Result(Outcome.DEAD_LETTERED, reason=dead_letters.CONFLICT)


def _apply_messages(parsed: list[Parsed], *, session: Session, now: datetime) -> dict[int, Result]:
    """Lock every touched refund, claim the deliveries, record the claimed messages whose
    content is new, then recompute the refunds that gained a message."""
    if not parsed:
        return {}
    refunds = _locked_refunds(session, sorted({item.refund_key for item in parsed}))
    won = claims.claim(session, [(item.delivery, item.message.refund_id) for item in parsed],
                       now)
    results: dict[int, Result] = {}
    lost = [item for item in parsed if item.delivery.key not in won]
    if lost:  # another transaction claimed the key since `claims.known` read it
        known = claims.known(session, [item.delivery.key for item in lost])
        for item in lost:
            results[item.index] = _claimed_before(item.delivery, known[item.delivery.key],
                                                  session=session)
    claimed = [item for item in parsed if item.delivery.key in won]
    recorded = record_messages(session, claimed, now)
    latest = {key: refund.updated_at for key, refund in refunds.items()}
    settled = []
    for item in claimed:
        outcome = Outcome.APPLIED if item.index in recorded.new else Outcome.DUPLICATE_MESSAGE
        settled.append(Settled(item.delivery, outcome.value,
                               recorded.message_ids[item.content_key]))
        if outcome is Outcome.DUPLICATE_MESSAGE:
            results[item.index] = Result(outcome, item.message.refund_id)
            continue
        before, occurred = latest[item.refund_key], item.message.occurred_at
        results[item.index] = Result(outcome, item.message.refund_id,
                                     stale=before is not None and occurred < before)
        latest[item.refund_key] = occurred if before is None else max(before, occurred)
    claims.settle(session, settled)
    changed = sorted({item.refund_key for item in claimed if item.index in recorded.new})
    _refresh_all(session, {key: refunds[key] for key in changed}, now)
    return results


def _locked_refunds(session: Session, keys: list[RefundKey]) -> dict[RefundKey, Refund]:
    """Create missing refund rows, then lock them all in one fixed order (shop, refund id),
    the order every transaction uses, so two sharing refunds wait instead of deadlocking.
    Holding a refund's lock is what allows recording messages for it."""
    insert_ignore_many(session, Refund, [placeholder_row(*key) for key in keys],
                       ["shop", "refund_id"])
    query = (
        select(Refund)
        .where(in_pairs(Refund.shop, Refund.refund_id, keys))
        .order_by(Refund.shop, Refund.refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(refund.shop, refund.refund_id): refund for refund in session.scalars(query)}


def placeholder_row(shop: str, refund_id: str) -> dict[str, Any]:
    """A refund row to hold the lock on before its first message is recorded."""
    return {
        "shop": shop,
        "refund_id": refund_id,
        "status": IN_PROGRESS,
        "fund_changes": [],
        "events_applied": 0,
    }


def _refresh_all(session: Session, refunds: dict[RefundKey, Refund], now: datetime) -> None:
    if not refunds:
        return
    query = select(MessageRecord).where(
        in_pairs(MessageRecord.shop, MessageRecord.refund_id, list(refunds)))
    by_refund: dict[RefundKey, list[MessageRecord]] = defaultdict(list)
    for message in session.scalars(query):
        by_refund[(message.shop, message.refund_id)].append(message)
    for key, refund in refunds.items():
        refresh(refund, by_refund[key], now=now)


def refresh(refund: Refund, messages: Sequence[MessageRecord], *, now: datetime) -> None:
    """Recompute the refund from all its recorded messages: arrival order cannot matter."""
    state = fold(messages)
    for name in state.COLUMNS:
        setattr(refund, name, getattr(state, name))
    refund.fund_changes = [change.as_json() for change in state.fund_changes]
    refund.last_applied_at = now
