"""Raw-body retention (`REFUND_SINK_RAW_RETENTION_DAYS`, applied by `refund-sink retention
apply`): the body of an archived delivery that had its effect is dropped once older than the
retention, its metadata kept (shop, delivery id, topic, the digest of the body received,
headers, times), so the archive still says what arrived and when, and a redelivery is still
a duplicate. A dropped body is empty bytes, and its headers carry `DROPPED_HEADER` (when it was
dropped): the one JSON column beside it, as the table has no column for it.

What is kept: the body of a delivery that has not had its effect (a dead letter still open, a
conflicting body), and a dead letter's own body until the letter is resolved; a resolved
letter's body is dropped once it was resolved longer ago than the retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from refunds.dead_letters import RESOLVED
from refunds.models import DeadLetter, DeliveryClaim, RawDeliveryRecord

DROPPED_HEADER = "x-refund-sink-body-dropped-at"
PAGE = 500  # rows per transaction


@dataclass(frozen=True)
class Dropped:
    raw_deliveries: int = 0
    dead_letters: int = 0


def drop_page(*, session: Session, days: int, now: datetime) -> Dropped:
    """Drop up to PAGE bodies of each table past the retention; how many. The caller commits
    and calls again until a page is not full. Runs in the caller's transaction."""
    cutoff = now - timedelta(days=days)
    applied = exists().where(and_(DeliveryClaim.shop == RawDeliveryRecord.shop,
                                  DeliveryClaim.delivery_id == RawDeliveryRecord.delivery_id,
                                  DeliveryClaim.body_sha256 == RawDeliveryRecord.body_sha256))
    archived = session.scalars(
        select(RawDeliveryRecord)
        .where(RawDeliveryRecord.received_at < cutoff,
               func.length(RawDeliveryRecord.body) > 0, applied)
        .order_by(RawDeliveryRecord.shop, RawDeliveryRecord.delivery_id,
                  RawDeliveryRecord.body_sha256)
        .limit(PAGE).with_for_update()).all()
    letters = session.scalars(
        select(DeadLetter)
        .where(DeadLetter.state == RESOLVED, DeadLetter.resolved_at < cutoff,
               func.length(DeadLetter.body) > 0)
        .order_by(DeadLetter.id).limit(PAGE).with_for_update()).all()
    rows: list[RawDeliveryRecord | DeadLetter] = [*archived, *letters]
    for row in rows:
        row.body = b""
        row.headers = {**row.headers, DROPPED_HEADER: now.isoformat()}
    return Dropped(len(archived), len(letters))
