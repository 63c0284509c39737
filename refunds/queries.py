"""Read queries over refunds and deliveries, kept in the core so every view (API, CLI, later
the refund desk) and the ledger's sweeper ask the same questions the same way."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from refunds import dead_letters
from refunds.db import in_pairs
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, Refund

MAX_PAGE = 500


class AmbiguousRefund(LookupError):
    """The refund id exists in several shops; the caller must name one."""

    def __init__(self, shops: Sequence[str]):
        super().__init__(f"refund exists in several shops: {', '.join(shops)}")
        self.shops = list(shops)


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    refunds: Sequence[Refund]
    next_cursor: str | None


def refund(refund_id: str, *, shop: str | None, session: Session) -> Refund | None:
    query = select(Refund).where(Refund.refund_id == refund_id, Refund.events_applied > 0)
    if shop is not None:
        query = query.where(Refund.shop == shop)
    found = session.scalars(query.order_by(Refund.shop).limit(2)).all()
    if len(found) > 1:
        raise AmbiguousRefund([row.shop for row in found])
    return found[0] if found else None


def refunds_for_order(order_id: str, *, shop: str | None, session: Session) -> Sequence[Refund]:
    query = select(Refund).where(Refund.order_id == order_id).order_by(Refund.refund_id)
    if shop is not None:
        query = query.where(Refund.shop == shop)
    return session.scalars(query).all()


def refunds_page(
    *,
    session: Session,
    order_id: str | None = None,
    status: str | None = None,
    updated_since: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page:
    """Keyset pagination on (shop, refund id): stable while new refunds arrive."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Refund).where(Refund.events_applied > 0)
    if order_id is not None:
        query = query.where(Refund.order_id == order_id)
    if status is not None:
        query = query.where(Refund.status == status)
    if updated_since is not None:
        query = query.where(Refund.updated_at >= updated_since)
    if cursor:
        query = query.where(tuple_(Refund.shop, Refund.refund_id) > decode_cursor(cursor))
    rows = session.scalars(query.order_by(Refund.shop, Refund.refund_id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = encode_cursor(rows[-1].shop, rows[-1].refund_id) if more else None
    return Page(rows, next_cursor)


def settled_copies(
    copies: Mapping[str, tuple[RawDelivery, datetime]], *, session: Session
) -> set[str]:
    """Of these published copies (by message id: the delivery and when the copy was
    published), those whose fate is committed: the delivery is claimed with this body
    (applied, or a duplicate of a recorded message), or this body was dead-lettered (as a
    conflict too) since that copy was published. An older dead letter does not settle a later
    copy, nor a claim of another body under the key: that copy could still apply, or still
    become a conflict."""
    if not copies:
        return set()
    keys = {delivery.key for delivery, _ in copies.values()}
    letter_keys = keys | {dead_letters.conflicting(delivery).key
                          for delivery, _ in copies.values()}
    claimed = {tuple(row) for row in session.execute(
        select(DeliveryClaim.shop, DeliveryClaim.delivery_id, DeliveryClaim.body_sha256).where(
            in_pairs(DeliveryClaim.shop, DeliveryClaim.delivery_id, keys)))}
    letters = session.execute(
        select(DeadLetter.shop, DeadLetter.delivery_id, DeadLetter.body_sha256,
               DeadLetter.last_failed_at).where(
            in_pairs(DeadLetter.shop, DeadLetter.delivery_id, letter_keys),
            DeadLetter.state == dead_letters.DEAD))
    dead = {(row.shop, row.delivery_id, row.body_sha256): row.last_failed_at for row in letters}

    def settled(delivery: RawDelivery, published_at: datetime) -> bool:
        if (*delivery.key, delivery.body_sha256) in claimed:
            return True
        for key in (delivery.key, dead_letters.conflicting(delivery).key):
            failed_at = dead.get((*key, delivery.body_sha256))
            if failed_at is not None and failed_at >= published_at:
                return True
        return False

    return {message_id for message_id, copy in copies.items() if settled(*copy)}


def encode_cursor(shop: str, refund_id: str) -> str:
    raw = f"{shop}\n{refund_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        shop, refund_id = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("\n")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadCursor("cursor is not one this API returned") from None
    return shop, refund_id
