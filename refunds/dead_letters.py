"""The dead-letter store: one row per (shop, delivery id), kept until a requeue resolves it."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from refunds.db import SessionFactory, in_pairs, insert_ignore
from refunds.delivery import MAX_KEY_LENGTH, TRIGGERED_AT_HEADER, Origin, RawDelivery
from refunds.logs import event
from refunds.models import DeadLetter, DeliveryClaim

log = logging.getLogger("refund_sink.dead_letters")

DEAD = "dead"
REQUEUED = "requeued"
RESOLVED = "resolved"
STATES = (DEAD, REQUEUED, RESOLVED)
CONFLICT = "delivery_conflict"
UNKNOWN_SHOP = "unknown_shop"
REASONS = (
    "invalid_json",
    "invalid_payload",
    "unsupported_topic",
    "unknown_status",
    "unknown_shop",
    "retries_exhausted",
    "worker_lost",
    "internal_error",
    CONFLICT,
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
    """One row per (shop, delivery id) and body: a repeated failure of the same delivery
    updates its row instead of adding one. A delivery whose key already had its effect with
    another body is recorded as that conflict (`record_conflict`); the failure of another body
    under a key that already has a dead letter gets a row of its own (`conflicting`). A
    delivery whose effect another copy recorded is resolved at once. Runs in the caller's
    transaction, never commits."""
    claim = session.get(DeliveryClaim, delivery.key)
    if claim is not None and claim.body_sha256 != delivery.body_sha256:
        record_conflict(delivery, claim.body_sha256, session=session)
        return
    kept = session.scalar(select(DeadLetter.body_sha256).where(
        DeadLetter.shop == delivery.shop, DeadLetter.delivery_id == delivery.delivery_id))
    if kept is not None and kept != delivery.body_sha256:
        delivery = conflicting(delivery)
    _upsert(delivery, reason=reason, error=error, errors=errors, attempts=attempts,
            session=session)
    if claim is not None:
        resolve_all([delivery], session=session, now=datetime.now(UTC))


def record_conflict(delivery: RawDelivery, applied_sha256: str, *, session: Session) -> None:
    """A body other than the one its (shop, delivery id) was applied with: not applied, not
    dropped. A dead letter `delivery_conflict` naming both bodies' digests, under a delivery id
    of its own (`conflicting`), so a requeue applies it as a delivery of its own."""
    own = conflicting(delivery)
    error = (f"delivery id already applied with a body of sha256 {applied_sha256}; "
             f"this body has sha256 {delivery.body_sha256}")
    _upsert(own, reason=CONFLICT, error=error, errors=(), attempts=1, session=session)
    if session.get(DeliveryClaim, own.key) is not None:  # requeued before, and applied
        resolve_all([own], session=session, now=datetime.now(UTC))


def _upsert(
    delivery: RawDelivery, *, reason: str, error: str, errors: Sequence[dict[str, Any]],
    attempts: int, session: Session,
) -> None:
    now = datetime.now(UTC)
    failure = {"reason": reason, "error": error, "errors": list(errors), "state": DEAD}
    new_row = {
        **failure,
        "delivery_id": delivery.delivery_id,
        "topic": delivery.topic,
        "shop": delivery.shop,
        "body_sha256": delivery.body_sha256,
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


def conflicting(delivery: RawDelivery) -> RawDelivery:
    """The delivery under a delivery id of its own: the original id and the body's digest.
    Its dead letter is kept apart from the original's, and a requeue applies it as a
    delivery of its own."""
    suffix = f"~{delivery.body_sha256[:16]}"
    return dataclasses.replace(
        delivery, delivery_id=delivery.delivery_id[: MAX_KEY_LENGTH - len(suffix)] + suffix)


def resolve_all(deliveries: Collection[RawDelivery], *, session: Session, now: datetime) -> None:
    """Close the dead letters of these deliveries (same shop, delivery id and body): each has
    had its effect. A letter of another body under the same key stays open."""
    if deliveries:
        keys = {delivery.key for delivery in deliveries}
        bodies = [(*delivery.key, delivery.body_sha256) for delivery in deliveries]
        session.execute(
            update(DeadLetter)
            .where(in_pairs(DeadLetter.shop, DeadLetter.delivery_id, keys),
                   tuple_(DeadLetter.shop, DeadLetter.delivery_id,
                          DeadLetter.body_sha256).in_(bodies),
                   DeadLetter.state != RESOLVED)
            .values(state=RESOLVED, resolved_at=now)
        )


def find(
    *,
    session: Session,
    shop: str | None = None,
    reason: str | None = None,
    state: str | None = None,
    after_id: int | None = None,
    limit: int | None = 1000,
) -> Sequence[DeadLetter]:
    """Dead letters in id order, filtered; those after `after_id` when given (keyset paging);
    at most `limit` (None: all)."""
    query = select(DeadLetter).order_by(DeadLetter.id).limit(limit)
    if shop is not None:
        query = query.where(DeadLetter.shop == shop)
    if reason:
        query = query.where(DeadLetter.reason == reason)
    if state:
        query = query.where(DeadLetter.state == state)
    if after_id is not None:
        query = query.where(DeadLetter.id > after_id)
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
                  delivery_id=delivery.delivery_id, shop=delivery.shop,
                  error=type(error).__name__)
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
        origin=Origin.REQUEUED,
    )
