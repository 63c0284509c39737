"""Apply many raw deliveries in one transaction, with the rules and records of `apply` but a
fixed number of multi-row statements per batch instead of a dozen round trips per delivery.

The outcome of each delivery, and the database afterwards, are those of applying the batch's
deliveries one by one in order: the dedupe record and the effect still commit together, and
each touched refund is recomputed once from all its messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from refunds import dead_letters
from refunds.apply import (
    Outcome,
    Result,
    archive_row,
    claim_row,
    dead_letter,
    message_row,
    parse,
    placeholder_row,
    refresh,
)
from refunds.db import insert_ignore_many
from refunds.delivery import RawDelivery
from refunds.models import Delivery, MessageRecord, RawDeliveryRecord, Refund
from schemas import PayloadRejected, RefundMessage

RefundKey = tuple[str, str]  # (shop, refund id)


@dataclass(frozen=True)
class Parsed:
    index: int  # position in the batch
    delivery: RawDelivery
    message: RefundMessage

    @property
    def refund_key(self) -> RefundKey:
        return (self.message.shop, self.message.refund_id)


def process_batch(
    deliveries: Sequence[RawDelivery], *, session: Session, naive_tz: str
) -> list[Result]:
    """One result per delivery, in the batch's order."""
    now = datetime.now(UTC)
    insert_ignore_many(session, RawDeliveryRecord.__table__,  # type: ignore[arg-type]
                       _distinct_archive_rows(deliveries, now), ["delivery_id"])
    claimed_before = _claimed(session, [d.delivery_id for d in deliveries])
    results: dict[int, Result] = {}
    parsed_copy: dict[str, int] = {}  # delivery id -> position of its first copy that parsed
    parsed: list[Parsed] = []
    for index, delivery in enumerate(deliveries):
        if (refund_id := claimed_before.get(delivery.delivery_id)) is not None:
            results[index] = Result(Outcome.DUPLICATE_DELIVERY, refund_id)
        elif delivery.delivery_id not in parsed_copy:
            try:
                parsed.append(Parsed(index, delivery, parse(delivery, naive_tz=naive_tz)))
                parsed_copy[delivery.delivery_id] = index
            except PayloadRejected as rejected:
                results[index] = dead_letter(delivery, rejected, session=session)
    # a delivery that has had (or now has) its effect closes its dead letter, if any
    dead_letters.resolve_all([*claimed_before, *parsed_copy], session=session, now=now)
    results.update(_apply_messages(parsed, session=session, now=now))
    for index, delivery in enumerate(deliveries):
        if index not in results:  # a later copy of a delivery id that had its effect
            first = results[parsed_copy[delivery.delivery_id]]
            results[index] = Result(Outcome.DUPLICATE_DELIVERY, first.refund_id)
    return [results[index] for index in range(len(deliveries))]


def _apply_messages(parsed: list[Parsed], *, session: Session, now: datetime) -> dict[int, Result]:
    """Lock every touched refund, record the new messages, claim the delivery ids, then
    recompute the refunds that gained a message."""
    if not parsed:
        return {}
    refunds = _locked_refunds(session, sorted({p.refund_key for p in parsed}))
    message_ids = _record_messages(session, parsed, now)
    claims = []
    for item in parsed:
        message_id = message_ids.get(item.index)
        outcome = Outcome.DUPLICATE_MESSAGE if message_id is None else Outcome.APPLIED
        claims.append(claim_row(item.message, delivery=item.delivery, now=now, outcome=outcome,
                                message_id=message_id))
    claimed = {row.delivery_id for row in insert_ignore_many(
        session, Delivery.__table__, claims, ["delivery_id"], returning=("delivery_id",))}  # type: ignore[arg-type]
    results = {}
    latest = {key: refund.updated_at for key, refund in refunds.items()}
    for item, claim in zip(parsed, claims, strict=True):
        refund_id = item.message.refund_id
        if item.delivery.delivery_id not in claimed:  # another worker had its effect first
            results[item.index] = Result(Outcome.DUPLICATE_DELIVERY, refund_id)
        elif claim["message_id"] is None:
            results[item.index] = Result(Outcome.DUPLICATE_MESSAGE, refund_id)
        else:
            before = latest[item.refund_key]
            occurred = item.message.occurred_at
            results[item.index] = Result(Outcome.APPLIED, refund_id,
                                         stale=before is not None and occurred < before)
            latest[item.refund_key] = occurred if before is None else max(before, occurred)
    changed = sorted({p.refund_key for p in parsed if p.index in message_ids})
    _refresh_all(session, {key: refunds[key] for key in changed}, now)
    return results


def _distinct_archive_rows(
    deliveries: Sequence[RawDelivery], now: datetime
) -> list[dict[str, Any]]:
    """The first copy of each delivery id, sorted by id: two batches holding the same ids in
    another order must not each wait for the other's insert."""
    first: dict[str, RawDelivery] = {}
    for delivery in deliveries:
        first.setdefault(delivery.delivery_id, delivery)
    return [archive_row(first[delivery_id], now=now) for delivery_id in sorted(first)]


def _claimed(session: Session, delivery_ids: list[str]) -> dict[str, str]:
    """Refund ids by delivery id, for the deliveries that have already had their effect."""
    query = select(Delivery.delivery_id, Delivery.refund_id).where(
        Delivery.delivery_id.in_(set(delivery_ids))
    )
    return {row.delivery_id: row.refund_id for row in session.execute(query)}


def _locked_refunds(session: Session, keys: list[RefundKey]) -> dict[RefundKey, Refund]:
    """Create missing refund rows, then lock them all in one fixed order (shop, refund id),
    the order every batch uses, so two batches sharing refunds wait instead of deadlocking."""
    insert_ignore_many(session, Refund.__table__,  # type: ignore[arg-type]
                       [placeholder_row(*key) for key in keys], ["shop", "refund_id"])
    query = (
        select(Refund)
        .where(_of_refunds(Refund.shop, Refund.refund_id, keys))
        .order_by(Refund.shop, Refund.refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(refund.shop, refund.refund_id): refund for refund in session.scalars(query)}


def _record_messages(session: Session, parsed: list[Parsed], now: datetime) -> dict[int, int]:
    """Message ids by batch position, for the messages whose content was new."""
    first_with_content: dict[tuple[str, str, str], Parsed] = {}
    for item in parsed:
        first_with_content.setdefault((*item.refund_key, item.message.fingerprint), item)
    rows = [message_row(item.message, delivery_id=item.delivery.delivery_id, now=now)
            for item in first_with_content.values()]
    inserted = insert_ignore_many(
        session, MessageRecord.__table__, rows, ["shop", "refund_id", "fingerprint"],  # type: ignore[arg-type]
        returning=("id", "shop", "refund_id", "fingerprint"),
    )
    return {first_with_content[(row.shop, row.refund_id, row.fingerprint)].index: row.id
            for row in inserted}


def _refresh_all(session: Session, refunds: dict[RefundKey, Refund], now: datetime) -> None:
    if not refunds:
        return
    query = select(MessageRecord).where(
        _of_refunds(MessageRecord.shop, MessageRecord.refund_id, list(refunds))
    )
    by_refund: dict[RefundKey, list[MessageRecord]] = defaultdict(list)
    for message in session.scalars(query):
        by_refund[(message.shop, message.refund_id)].append(message)
    for key, refund in refunds.items():
        refresh(refund, by_refund[key], now=now)


def _of_refunds(shop: Any, refund_id: Any, keys: list[RefundKey]) -> Any:
    """`shop = s AND refund_id IN (...)` per shop: with a row-value IN over one shop,
    PostgreSQL factors the shop out and may scan the whole shop through its index."""
    by_shop: dict[str, list[str]] = defaultdict(list)
    for key_shop, key_refund in keys:
        by_shop[key_shop].append(key_refund)
    return or_(*(and_(shop == key_shop, refund_id.in_(ids)) for key_shop, ids in by_shop.items()))
