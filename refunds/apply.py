"""Apply one raw delivery: archive it, parse it, dedupe it and fold it into its refund, all in
the caller's transaction, so the dedupe record and the state change commit together."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds import dead_letters
from refunds.db import insert_ignore
from refunds.delivery import RawDelivery
from refunds.models import Delivery, MessageRecord, RawDeliveryRecord, Refund
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


def process_delivery(delivery: RawDelivery, *, session: Session, naive_tz: str) -> Result:
    now = datetime.now(UTC)
    archive(delivery, session=session, now=now)
    claim = session.get(Delivery, delivery.delivery_id)
    if claim is not None:
        dead_letters.resolve(delivery.delivery_id, session=session, now=now)
        return Result(Outcome.DUPLICATE_DELIVERY, claim.refund_id)
    try:
        message = parse(delivery, naive_tz=naive_tz)
    except PayloadRejected as rejected:
        return dead_letter(delivery, rejected, session=session)
    return apply_message(message, delivery=delivery, session=session, now=now)


def parse(delivery: RawDelivery, *, naive_tz: str) -> RefundMessage:
    return parse_delivery(
        delivery.body,
        topic=delivery.topic,
        shop=delivery.shop,
        triggered_at=delivery.triggered_at,
        received_at=delivery.received_at,
        naive_tz=naive_tz,
    )


def dead_letter(delivery: RawDelivery, rejected: PayloadRejected, *, session: Session) -> Result:
    dead_letters.record(
        delivery,
        reason=rejected.reason,
        error=rejected.detail,
        errors=rejected.errors,
        session=session,
    )
    return Result(Outcome.DEAD_LETTERED, reason=rejected.reason)


def archive(delivery: RawDelivery, *, session: Session, now: datetime) -> None:
    insert_ignore(session, RawDeliveryRecord.__table__, archive_row(delivery, now=now),  # type: ignore[arg-type]
                  ["delivery_id"])


def archive_row(delivery: RawDelivery, *, now: datetime) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "topic": delivery.topic,
        "shop": delivery.shop,
        "headers": dict(delivery.headers),
        "body": delivery.body,
        "received_at": delivery.received_at,
        "archived_at": now,
    }


def apply_message(
    message: RefundMessage, *, delivery: RawDelivery, session: Session, now: datetime
) -> Result:
    """Claim the delivery id, lock the refund, record the message unless its content is
    already recorded, then recompute the refund from all its messages."""
    dead_letters.resolve(delivery.delivery_id, session=session, now=now)
    if not _claim_delivery(message, delivery=delivery, session=session, now=now):
        return Result(Outcome.DUPLICATE_DELIVERY, message.refund_id)
    refund = _locked_refund(message, session=session)
    message_id = insert_ignore(
        session,
        MessageRecord.__table__,  # type: ignore[arg-type]
        message_row(message, delivery_id=delivery.delivery_id, now=now),
        ["shop", "refund_id", "fingerprint"],
        returning="id",
    )
    claim = session.get_one(Delivery, delivery.delivery_id)
    if message_id is None:
        claim.outcome = Outcome.DUPLICATE_MESSAGE.value
        return Result(Outcome.DUPLICATE_MESSAGE, message.refund_id)
    claim.message_id = message_id
    stale = refund.updated_at is not None and message.occurred_at < refund.updated_at
    _refresh(refund, session=session, now=now)
    return Result(Outcome.APPLIED, message.refund_id, stale=stale)


def _claim_delivery(
    message: RefundMessage, *, delivery: RawDelivery, session: Session, now: datetime
) -> bool:
    values = claim_row(message, delivery=delivery, now=now)
    return insert_ignore(session, Delivery.__table__, values, ["delivery_id"]) is not None  # type: ignore[arg-type]


def claim_row(
    message: RefundMessage,
    *,
    delivery: RawDelivery,
    now: datetime,
    outcome: Outcome = Outcome.APPLIED,
    message_id: int | None = None,
) -> dict[str, Any]:
    """The dedupe record of a delivery id, and what its one effect was."""
    return {
        "delivery_id": delivery.delivery_id,
        "topic": delivery.topic,
        "shop": message.shop,
        "refund_id": message.refund_id,
        "outcome": outcome.value,
        "message_id": message_id,
        "processed_at": now,
    }


def _locked_refund(message: RefundMessage, *, session: Session) -> Refund:
    """Create the refund row if missing, then hold its row lock until commit so two workers
    applying messages of one refund take turns."""
    insert_ignore(session, Refund.__table__, placeholder_row(message.shop, message.refund_id),  # type: ignore[arg-type]
                  ["shop", "refund_id"])
    query = (
        select(Refund)
        .where(Refund.shop == message.shop, Refund.refund_id == message.refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalar_one()


def placeholder_row(shop: str, refund_id: str) -> dict[str, Any]:
    """A refund row to hold the lock on before its first message is recorded."""
    return {
        "shop": shop,
        "refund_id": refund_id,
        "status": IN_PROGRESS,
        "fund_changes": [],
        "events_applied": 0,
    }


def message_row(message: RefundMessage, *, delivery_id: str, now: datetime) -> dict[str, Any]:
    """The facts the fold needs as columns, and the whole normalized message for audit."""
    line_items = message.line_items
    return {
        "shop": message.shop,
        "refund_id": message.refund_id,
        "fingerprint": message.fingerprint,
        "delivery_id": delivery_id,
        "kind": message.kind,
        "occurred_at": message.occurred_at,
        "created_at": message.created_at,
        "price": message.price,
        "order_id": message.order_id,
        "currency": message.currency,
        "customer_id": message.customer_id,
        "note": message.note,
        "line_items": None
        if line_items is None
        else [item.model_dump(mode="json") for item in line_items],
        "message": message.model_dump(mode="json"),
        "recorded_at": now,
    }


def _refresh(refund: Refund, *, session: Session, now: datetime) -> None:
    messages = session.scalars(
        select(MessageRecord).where(
            MessageRecord.shop == refund.shop, MessageRecord.refund_id == refund.refund_id
        )
    ).all()
    refresh(refund, messages, now=now)


def refresh(refund: Refund, messages: Sequence[MessageRecord], *, now: datetime) -> None:
    """Recompute the refund from all its recorded messages: arrival order cannot matter."""
    state = fold(messages)
    for name in state.COLUMNS:
        setattr(refund, name, getattr(state, name))
    refund.fund_changes = [change.as_json() for change in state.fund_changes]
    refund.last_applied_at = now
