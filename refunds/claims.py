"""Delivery claims: the dedupe record of each (shop, delivery id), with the body that had its
effect. The database decides who claims a key (`INSERT ... ON CONFLICT DO NOTHING`); the
outcome is written once the claimed messages are recorded, in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from refunds.db import in_pairs, insert_ignore_many, table_of
from refunds.delivery import DeliveryKey, RawDelivery
from refunds.models import DeliveryClaim, MessageRecord

PROVISIONAL = "applied"  # a claim's outcome until `settle` writes the real one


@dataclass(frozen=True)
class KnownClaim:
    """A committed claim, as a later delivery under its key needs it: the body that had the
    effect, and the message it recorded or duplicated (for the refund's timeline)."""

    refund_id: str
    body_sha256: str
    message_id: int | None = None
    occurred_at: datetime | None = None
    kind: str | None = None
    price: Decimal | None = None


@dataclass(frozen=True)
class Settled:
    """What a claimed delivery did: its outcome, and the message it recorded or duplicated."""

    delivery: RawDelivery
    outcome: str
    message_id: int


def known(session: Session, keys: Sequence[DeliveryKey]) -> dict[DeliveryKey, KnownClaim]:
    """The claims these keys already have."""
    if not keys:
        return {}
    query = (
        select(DeliveryClaim.shop, DeliveryClaim.delivery_id, DeliveryClaim.refund_id,
               DeliveryClaim.body_sha256, DeliveryClaim.message_id, MessageRecord.occurred_at,
               MessageRecord.kind, MessageRecord.price)
        .outerjoin(MessageRecord, MessageRecord.id == DeliveryClaim.message_id)
        .where(in_pairs(DeliveryClaim.shop, DeliveryClaim.delivery_id, keys))
    )
    return {(row.shop, row.delivery_id): KnownClaim(row.refund_id, row.body_sha256,
                                                    row.message_id, row.occurred_at, row.kind,
                                                    row.price)
            for row in session.execute(query)}


def claim(
    session: Session, deliveries: Sequence[tuple[RawDelivery, str]], now: datetime
) -> set[DeliveryKey]:
    """Claim each (delivery, refund id), in key order (the order every transaction takes
    their locks); the keys this transaction won. A key another transaction holds waits for
    it to end, then is lost."""
    rows = [{
        "shop": delivery.shop,
        "delivery_id": delivery.delivery_id,
        "body_sha256": delivery.body_sha256,
        "topic": delivery.topic,
        "refund_id": refund_id,
        "outcome": PROVISIONAL,
        "message_id": None,
        "processed_at": now,
    } for delivery, refund_id in sorted(deliveries, key=lambda pair: pair[0].key)]
    inserted = insert_ignore_many(session, DeliveryClaim, rows, ["shop", "delivery_id"],
                                  returning=("shop", "delivery_id"))
    return {(row.shop, row.delivery_id) for row in inserted}


_CLAIMS = table_of(DeliveryClaim)
_SETTLE = (
    update(_CLAIMS)
    .where(_CLAIMS.c.shop == bindparam("key_shop"),
           _CLAIMS.c.delivery_id == bindparam("key_delivery_id"))
    .values(outcome=bindparam("outcome"), message_id=bindparam("message_id"))
)


def settle(session: Session, settled: Sequence[Settled]) -> None:
    """Write the won claims' outcomes and messages: one statement, in key order."""
    if settled:
        rows = [{"key_shop": item.delivery.shop, "key_delivery_id": item.delivery.delivery_id,
                 "outcome": item.outcome, "message_id": item.message_id}
                for item in sorted(settled, key=lambda item: item.delivery.key)]
        session.connection().execute(_SETTLE, rows)
