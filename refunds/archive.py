"""The raw archive: every accepted delivery as received, whatever became of it, so state can
be rebuilt and audited. Written in the transaction that decides the delivery's fate (its
effect, or its dead letter): a delivery is archived exactly when that fate is committed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.db import insert_ignore_many
from refunds.delivery import RawDelivery
from refunds.models import RawDeliveryRecord

KEY = ["shop", "delivery_id", "body_sha256"]


def archive(deliveries: Sequence[RawDelivery], *, session: Session, now: datetime) -> None:
    """Each distinct (shop, delivery id, body) once, in key order: two batches holding the
    same deliveries in another order must not each wait for the other's insert. Runs in the
    caller's transaction, never commits."""
    distinct = {(*delivery.key, delivery.body_sha256): delivery for delivery in deliveries}
    rows = [_row(distinct[key], now=now) for key in sorted(distinct)]
    insert_ignore_many(session, RawDeliveryRecord, rows, KEY)


def bodies(shop: str, delivery_id: str, *, session: Session) -> Sequence[RawDeliveryRecord]:
    """Every body archived under (shop, delivery id), in the order received: one, or more
    when conflicting bodies came under the same id. Empty when none was archived. Reads only,
    in the caller's session."""
    query = select(RawDeliveryRecord).where(RawDeliveryRecord.shop == shop,
                                            RawDeliveryRecord.delivery_id == delivery_id)
    return session.scalars(query.order_by(RawDeliveryRecord.received_at,
                                          RawDeliveryRecord.body_sha256)).all()


def _row(delivery: RawDelivery, *, now: datetime) -> dict[str, Any]:
    return {
        "shop": delivery.shop,
        "delivery_id": delivery.delivery_id,
        "body_sha256": delivery.body_sha256,
        "topic": delivery.topic,
        "headers": dict(delivery.headers),
        "body": delivery.body,
        "received_at": delivery.received_at,
        "archived_at": now,
    }
