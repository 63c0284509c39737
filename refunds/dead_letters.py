"""The dead-letter store: one row per (shop, delivery id), kept until a requeue resolves it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from refunds.archive import archive
from refunds.db import SessionFactory, in_pairs, insert_ignore
from refunds.delivery import MAX_KEY_LENGTH, TRIGGERED_AT_HEADER, DeliveryKey, RawDelivery
from refunds.logs import event
from refunds.models import DeadLetter, DeliveryClaim

log = logging.getLogger("refund_sink.dead_letters")

DEAD = "dead"
REQUEUED = "requeued"
RESOLVED = "resolved"
STATES = (DEAD, REQUEUED, RESOLVED)
REASONS = (
    "invalid_json",
    "invalid_payload",
    "unsupported_topic",
    "unknown_status",
    "retries_exhausted",
    "worker_lost",
    "internal_error",
    "delivery_conflict",
)


def record(
    delivery: RawDelivery,
    *,
    reason: str,
    error: str,
    errors: Sequence[dict[str, Any]] = (),
    attempts: int = 1,
    session: Session,
) -> None:
    """A repeated failure of the same delivery updates its row instead of adding one; a
    delivery whose effect another copy already recorded is resolved at once. The delivery
    is archived with it. Runs in the caller's transaction, never commits."""
    now = datetime.now(UTC)
    archive([delivery], session=session, now=now)
    failure = {"reason": reason, "error": error, "errors": list(errors), "state": DEAD}
    new_row = {
        **failure,
        "delivery_id": delivery.delivery_id,
        "topic": delivery.topic,
        "shop": delivery.shop,
        "attempts": attempts,
        "headers": dict(delivery.headers),
        "body": delivery.body,
        "received_at": delivery.received_at,
        "first_failed_at": now,
        "last_failed_at": now,
    }
    if insert_ignore(session, DeadLetter, new_row, ["shop", "delivery_id"]) is None:
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.shop == delivery.shop,
                   DeadLetter.delivery_id == delivery.delivery_id)
            .values(**failure, attempts=DeadLetter.attempts + attempts, last_failed_at=now,
                    resolved_at=None)
        )
    if session.get(DeliveryClaim, delivery.key) is not None:
        resolve_all([delivery.key], session=session, now=now)


def conflicting(delivery: RawDelivery) -> RawDelivery:
    """A delivery whose (shop, delivery id) already had its effect with another body, under a
    delivery id of its own (the original id and the new body's digest): its dead letter is
    kept apart from the original's, and a requeue applies it as a delivery of its own."""
    suffix = f"~{delivery.body_sha256[:16]}"
    return dataclasses.replace(
        delivery, delivery_id=delivery.delivery_id[: MAX_KEY_LENGTH - len(suffix)] + suffix)


def resolve_all(keys: Collection[DeliveryKey], *, session: Session, now: datetime) -> None:
    if keys:
        session.execute(
            update(DeadLetter)
            .where(in_pairs(DeadLetter.shop, DeadLetter.delivery_id, keys),
                   DeadLetter.state != RESOLVED)
            .values(state=RESOLVED, resolved_at=now)
        )


def find(
    *,
    session: Session,
    reason: str | None = None,
    state: str | None = None,
    limit: int = 1000,
) -> Sequence[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id).limit(limit)
    if reason:
        query = query.where(DeadLetter.reason == reason)
    if state:
        query = query.where(DeadLetter.state == state)
    return session.scalars(query).all()


@dataclass
class RequeueResult:
    requeued: list[int] = field(default_factory=list)
    already_resolved: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def requeue(
    sessions: SessionFactory,
    publish: Callable[[RawDelivery], object],
    *,
    ids: Sequence[int] = (),
    reason: str | None = None,
) -> RequeueResult:
    """Send dead letters' original deliveries through the normal path again.

    The state is committed as `requeued` before publishing, so a worker that resolves the
    letter quickly is never overwritten; a failed publish puts the letter back to `dead`."""
    result = RequeueResult()
    pending = _mark_requeued(sessions, result, ids=ids, reason=reason)
    for letter_id, delivery in pending:
        try:
            publish(delivery)
        except Exception as error:
            _set_state(sessions, letter_id, DEAD)
            result.failed.append(letter_id)
            event(log, "dead letter requeue failed", logging.ERROR, dead_letter_id=letter_id,
                  delivery_id=delivery.delivery_id, error=type(error).__name__)
        else:
            result.requeued.append(letter_id)
            event(log, "dead letter requeued", dead_letter_id=letter_id,
                  delivery_id=delivery.delivery_id, shop=delivery.shop)
    return result


def _mark_requeued(
    sessions: SessionFactory, result: RequeueResult, *, ids: Sequence[int], reason: str | None
) -> list[tuple[int, RawDelivery]]:
    with sessions.begin() as session:
        letters = _select_for_requeue(session, ids=ids, reason=reason)
        found = {letter.id for letter in letters}
        result.not_found = [letter_id for letter_id in ids if letter_id not in found]
        pending = []
        for letter in letters:
            if letter.state == RESOLVED:
                result.already_resolved.append(letter.id)
            else:
                letter.state = REQUEUED
                pending.append((letter.id, to_delivery(letter)))
    return pending


def _select_for_requeue(
    session: Session, *, ids: Sequence[int], reason: str | None
) -> Sequence[DeadLetter]:
    query = select(DeadLetter).order_by(DeadLetter.id).with_for_update()
    # Named letters are requeued whatever their state; --all takes only the dead ones.
    query = query.where(DeadLetter.id.in_(ids) if ids else DeadLetter.state == DEAD)
    if reason:
        query = query.where(DeadLetter.reason == reason)
    return session.scalars(query).all()


def _set_state(sessions: SessionFactory, letter_id: int, state: str) -> None:
    with sessions.begin() as session:
        session.execute(
            update(DeadLetter)
            .where(DeadLetter.id == letter_id, DeadLetter.state == REQUEUED)
            .values(state=state)
        )


def to_delivery(letter: DeadLetter) -> RawDelivery:
    return RawDelivery(
        delivery_id=letter.delivery_id,
        topic=letter.topic,
        shop=letter.shop,
        body=letter.body,
        received_at=letter.received_at,
        triggered_at=letter.headers.get(TRIGGERED_AT_HEADER),
        headers=letter.headers,
    )
