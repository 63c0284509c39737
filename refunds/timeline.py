"""A refund's timeline: every delivery that reached it, with its effect and origin.

The apply path writes one event per such delivery in the transaction that decided its effect
(one multi-row insert per list of deliveries); the desk reads them back in the order the
refund's messages happened, then in arrival order."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.db import insert_many
from refunds.delivery import RawDelivery
from refunds.models import RefundEvent


class Effect(enum.StrEnum):
    APPLIED = "applied"
    STALE = "stale"  # recorded, but older than the refund's latest message when it arrived
    DUPLICATE_MESSAGE = "duplicate_message"  # the same content under another delivery id
    DUPLICATE_DELIVERY = "duplicate_delivery"  # the same (shop, delivery id) and body again
    CONFLICT = "conflict"  # another body under a claimed (shop, delivery id): a dead letter


@dataclass(frozen=True)
class Event:
    """What one delivery did to one refund, and what it said when that could be read."""

    delivery: RawDelivery
    refund_id: str
    effect: Effect
    occurred_at: datetime | None = None
    kind: str | None = None
    price: Decimal | None = None
    message_id: int | None = None


def record_events(session: Session, events: Sequence[Event], now: datetime) -> None:
    """One statement for the list. Runs in the caller's transaction, never commits."""
    if not events:
        return
    insert_many(session, RefundEvent, [{
        "shop": event.delivery.shop,
        "refund_id": event.refund_id,
        "delivery_id": event.delivery.delivery_id,
        "received_at": event.delivery.received_at,
        "occurred_at": event.occurred_at,
        "kind": event.kind,
        "price": event.price,
        "effect": event.effect.value,
        "origin": event.delivery.origin.value,
        "message_id": event.message_id,
        "recorded_at": now,
    } for event in events])


def timeline(shop: str, refund_id: str, *, session: Session) -> Sequence[RefundEvent]:
    """The refund's events in `occurred_at` order (unreadable ones last), then arrival.
    Empty for a refund without events; reads only, in the caller's session."""
    query = (
        select(RefundEvent)
        .where(RefundEvent.shop == shop, RefundEvent.refund_id == refund_id)
        .order_by(RefundEvent.occurred_at.is_(None), RefundEvent.occurred_at,
                  RefundEvent.received_at, RefundEvent.id)
    )
    return session.scalars(query).all()
