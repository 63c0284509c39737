"""Apply one raw delivery: archive it, parse it, dedupe it and fold it into its refund, all in
the caller's transaction, so the dedupe record and the state change commit together."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

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


def process_delivery(delivery: RawDelivery, *, session: Session, naive_tz: str) -> Outcome:
    now = datetime.now(UTC)
    archive(delivery, session=session, now=now)
    if session.get(Delivery, delivery.delivery_id) is not None:
        return Outcome.DUPLICATE_DELIVERY
    try:
        message = parse_delivery(
            delivery.body,
            topic=delivery.topic,
            shop=delivery.shop,
            triggered_at=delivery.triggered_at,
            received_at=delivery.received_at,
            naive_tz=naive_tz,
        )
    except PayloadRejected as rejected:
        dead_letters.record(
            delivery,
            reason=rejected.reason,
            error=rejected.detail,
            errors=rejected.errors,
            session=session,
        )
        return Outcome.DEAD_LETTERED
    return apply_message(message, delivery=delivery, session=session, now=now)


def archive(delivery: RawDelivery, *, session: Session, now: datetime) -> None:
    insert_ignore(
        session,
        RawDeliveryRecord.__table__,  # type: ignore[arg-type]
        {
            "delivery_id": delivery.delivery_id,
            "topic": delivery.topic,
            "shop": delivery.shop,
            "headers": dict(delivery.headers),
            "body": delivery.body,
            "received_at": delivery.received_at,
            "archived_at": now,
        },
        ["delivery_id"],
    )


def apply_message(
    message: RefundMessage, *, delivery: RawDelivery, session: Session, now: datetime
) -> Outcome:
    """Claim the delivery id, lock the refund, record the message unless its content is
    already recorded, then recompute the refund from all its messages."""
    if not _claim_delivery(message, delivery=delivery, session=session, now=now):
        return Outcome.DUPLICATE_DELIVERY
    refund = _locked_refund(message, session=session)
    record = _record_message(message, delivery=delivery, session=session, now=now)
    dead_letters.resolve(delivery.delivery_id, session=session, now=now)
    claim = session.get_one(Delivery, delivery.delivery_id)
    if record is None:
        claim.outcome = Outcome.DUPLICATE_MESSAGE.value
        return Outcome.DUPLICATE_MESSAGE
    claim.message_id = record.id
    _refresh(refund, session=session, now=now)
    return Outcome.APPLIED


def _claim_delivery(
    message: RefundMessage, *, delivery: RawDelivery, session: Session, now: datetime
) -> bool:
    return insert_ignore(
        session,
        Delivery.__table__,  # type: ignore[arg-type]
        {
            "delivery_id": delivery.delivery_id,
            "topic": delivery.topic,
            "shop": message.shop,
            "refund_id": message.refund_id,
            "outcome": Outcome.APPLIED.value,
            "processed_at": now,
        },
        ["delivery_id"],
    )


def _locked_refund(message: RefundMessage, *, session: Session) -> Refund:
    """Create the refund row if missing, then hold its row lock until commit so two workers
    applying messages of one refund take turns."""
    insert_ignore(
        session,
        Refund.__table__,  # type: ignore[arg-type]
        {
            "shop": message.shop,
            "refund_id": message.refund_id,
            "status": IN_PROGRESS,
            "fund_changes": [],
            "events_applied": 0,
        },
        ["shop", "refund_id"],
    )
    query = (
        select(Refund)
        .where(Refund.shop == message.shop, Refund.refund_id == message.refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(query).scalar_one()


def _record_message(
    message: RefundMessage, *, delivery: RawDelivery, session: Session, now: datetime
) -> MessageRecord | None:
    fingerprint = message.fingerprint()
    inserted = insert_ignore(
        session,
        MessageRecord.__table__,  # type: ignore[arg-type]
        {
            "shop": message.shop,
            "refund_id": message.refund_id,
            "fingerprint": fingerprint,
            "delivery_id": delivery.delivery_id,
            "kind": message.kind,
            "occurred_at": message.occurred_at,
            "created_at": message.created_at,
            "price": message.price,
            "order_id": message.order_id,
            "currency": message.currency,
            "customer_id": message.customer_id,
            "note": message.note,
            "line_items": _line_items(message),
            "message": message.model_dump(mode="json"),
            "recorded_at": now,
        },
        ["shop", "refund_id", "fingerprint"],
    )
    if not inserted:
        return None
    query = select(MessageRecord).where(
        MessageRecord.shop == message.shop,
        MessageRecord.refund_id == message.refund_id,
        MessageRecord.fingerprint == fingerprint,
    )
    return session.execute(query).scalar_one()


def _line_items(message: RefundMessage) -> list[dict[str, object]] | None:
    if message.line_items is None:
        return None
    return [item.model_dump(mode="json") for item in message.line_items]


def _refresh(refund: Refund, *, session: Session, now: datetime) -> None:
    messages = session.scalars(
        select(MessageRecord).where(
            MessageRecord.shop == refund.shop, MessageRecord.refund_id == refund.refund_id
        )
    ).all()
    state = fold(messages)
    refund.status = state.status
    refund.refund_price = state.refund_price
    refund.order_id = state.order_id
    refund.currency = state.currency
    refund.customer_id = state.customer_id
    refund.note = state.note
    refund.line_items = state.line_items
    refund.fund_changes = [
        {
            "amount": None if change.amount is None else str(change.amount),
            "previous_amount": None
            if change.previous_amount is None
            else str(change.previous_amount),
            "at": change.at.isoformat(),
        }
        for change in state.fund_changes
    ]
    refund.created_at = state.created_at
    refund.updated_at = state.updated_at
    refund.events_applied = state.events_applied
    refund.last_applied_at = now
