"""Recording messages: the first claimed message of each content becomes a `refund_messages`
row; later ones with the same fingerprint are duplicates of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.db import in_pairs, insert_ignore_many
from refunds.delivery import RawDelivery
from refunds.models import MessageRecord
from schemas import FINGERPRINT_VERSION, RefundMessage

RefundKey = tuple[str, str]  # (shop, refund id)
ContentKey = tuple[str, str, str]  # (shop, refund id, fingerprint)


@dataclass(frozen=True)
class Parsed:
    """A delivery in the list being applied, and the message it carries."""

    index: int  # position in the list
    delivery: RawDelivery
    message: RefundMessage

    @property
    def refund_key(self) -> RefundKey:
        return (self.message.shop, self.message.refund_id)

    @property
    def content_key(self) -> ContentKey:
        return (*self.refund_key, self.message.fingerprint)


@dataclass(frozen=True)
class Recorded:
    new: dict[int, int]  # list position -> id of the message it recorded
    message_ids: dict[ContentKey, int]  # every claimed content's message, new or not


def record_messages(session: Session, claimed: Sequence[Parsed], now: datetime) -> Recorded:
    """Record the first claimed message of each content not yet recorded. The caller holds
    the refunds' row locks, so no other transaction records messages of them meanwhile."""
    if not claimed:
        return Recorded({}, {})
    query = select(MessageRecord.id, MessageRecord.shop, MessageRecord.refund_id,
                   MessageRecord.fingerprint).where(
        in_pairs(MessageRecord.shop, MessageRecord.refund_id,
                 {item.refund_key for item in claimed}))
    message_ids = {(row.shop, row.refund_id, row.fingerprint): row.id
                   for row in session.execute(query)}
    first_new: dict[ContentKey, Parsed] = {}
    for item in claimed:
        if item.content_key not in message_ids:
            first_new.setdefault(item.content_key, item)
    rows = [message_row(item.message, delivery_id=item.delivery.delivery_id, now=now)
            for item in first_new.values()]
    inserted = insert_ignore_many(session, MessageRecord, rows,
                                  ["shop", "refund_id", "fingerprint"],
                                  returning=("id", "shop", "refund_id", "fingerprint"))
    new = {}
    for row in inserted:
        key = (row.shop, row.refund_id, row.fingerprint)
        message_ids[key] = row.id
        new[first_new[key].index] = row.id
    return Recorded(new, message_ids)


def message_row(message: RefundMessage, *, delivery_id: str, now: datetime) -> dict[str, Any]:
    """The facts the fold needs as columns, and the whole normalized message for audit."""
    line_items = message.line_items
    return {
        "shop": message.shop,
        "refund_id": message.refund_id,
        "fingerprint": message.fingerprint,
        "fingerprint_version": FINGERPRINT_VERSION,
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
