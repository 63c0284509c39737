"""The one apply path: raw deliveries (one delivery is a list of one) archived, parsed, claimed
and folded into their refunds, all in the caller's transaction, so each delivery's dedupe
record and its effect commit together.

The outcome of each delivery, and the database afterwards, are those of applying the
deliveries one by one in their order, with a fixed number of multi-row statements per list
instead of a dozen round trips per delivery."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from refunds import dead_letters
from refunds.archive import archive
from refunds.db import in_pairs, insert_ignore_many, table_of
from refunds.delivery import DeliveryKey, RawDelivery
from refunds.models import DeliveryClaim, MessageRecord, Refund
from refunds.state import IN_PROGRESS, fold
from schemas import FINGERPRINT_VERSION, PayloadRejected, RefundMessage, parse_delivery

RefundKey = tuple[str, str]  # (shop, refund id)
ContentKey = tuple[str, str, str]  # (shop, refund id, fingerprint)
CONFLICT = "delivery_conflict"


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


@dataclass(frozen=True)
class KnownClaim:
    """A committed claim, as a later delivery under its key needs it."""

    refund_id: str
    body_sha256: str


@dataclass(frozen=True)
class Parsed:
    index: int  # position in the list
    delivery: RawDelivery
    message: RefundMessage

    @property
    def refund_key(self) -> RefundKey:
        return (self.message.shop, self.message.refund_id)

    @property
    def content_key(self) -> ContentKey:
        return (*self.refund_key, self.message.fingerprint)


def apply_deliveries(
    deliveries: Sequence[RawDelivery], *, session: Session, naive_tz: str
) -> list[Result]:
    """One Result per delivery, in the given order.

    A payload that cannot be applied is a dead letter (a Result), not an error; a (shop,
    delivery id) that already had its effect with another body is a `delivery_conflict`
    dead letter. Raises what the database raises (then the whole list is to be tried again).
    Runs in the caller's transaction, never commits."""
    now = datetime.now(UTC)
    archive(deliveries, session=session, now=now)
    results: list[Result] = []
    for run in _runs_of_distinct_keys(deliveries):
        outcomes = _apply_run(list(enumerate(run)), session=session, naive_tz=naive_tz, now=now)
        results.extend(outcomes[index] for index in range(len(run)))
    return results


def _runs_of_distinct_keys(deliveries: Sequence[RawDelivery]) -> list[Sequence[RawDelivery]]:
    """Consecutive runs in which no (shop, delivery id) repeats: a later copy must meet the
    earlier copy's claim, as it would one by one. Almost always a single run."""
    runs: list[Sequence[RawDelivery]] = []
    start, keys = 0, set[DeliveryKey]()
    for index, delivery in enumerate(deliveries):
        if delivery.key in keys:
            runs.append(deliveries[start:index])
            start, keys = index, set[DeliveryKey]()
        keys.add(delivery.key)
    return [*runs, deliveries[start:]] if deliveries else []


def _apply_run(
    items: list[tuple[int, RawDelivery]], *, session: Session, naive_tz: str, now: datetime
) -> dict[int, Result]:
    claims = _claims(session, [delivery.key for _, delivery in items])
    results: dict[int, Result] = {}
    parsed: list[Parsed] = []
    for index, delivery in items:
        if (claim := claims.get(delivery.key)) is not None:
            results[index] = _claimed_before(delivery, claim, session=session)
            continue
        try:
            parsed.append(Parsed(index, delivery, parse(delivery, naive_tz=naive_tz)))
        except PayloadRejected as rejected:
            results[index] = _dead_letter(delivery, rejected.reason, rejected.detail,
                                          rejected.errors, session=session)
    results.update(_apply_messages(parsed, session=session, now=now))
    # A delivery that has had its effect closes its dead letter, if it has one.
    had_effect = [delivery.key for index, delivery in items
                  if results[index].outcome is not Outcome.DEAD_LETTERED]
    dead_letters.resolve_all(had_effect, session=session, now=now)
    return results


def parse(delivery: RawDelivery, *, naive_tz: str) -> RefundMessage:
    return parse_delivery(
        delivery.body,
        topic=delivery.topic,
        shop=delivery.shop,
        triggered_at=delivery.triggered_at,
        received_at=delivery.received_at,
        naive_tz=naive_tz,
    )


def _claimed_before(delivery: RawDelivery, claim: KnownClaim, *, session: Session) -> Result:
    """The same body again is a duplicate; another body is a conflict, kept as a dead letter
    under a delivery id of its own."""
    if claim.body_sha256 == delivery.body_sha256:
        return Result(Outcome.DUPLICATE_DELIVERY, claim.refund_id)
    error = (f"delivery id already applied with a body of sha256 {claim.body_sha256}; "
             f"this body has sha256 {delivery.body_sha256}")
    return _dead_letter(dead_letters.conflicting(delivery), CONFLICT, error, (),
                        session=session)


def _dead_letter(
    delivery: RawDelivery, reason: str, error: str, errors: Sequence[dict[str, Any]], *,
    session: Session,
) -> Result:
    dead_letters.record(delivery, reason=reason, error=error, errors=errors, session=session)
    return Result(Outcome.DEAD_LETTERED, reason=reason)


def _apply_messages(parsed: list[Parsed], *, session: Session, now: datetime) -> dict[int, Result]:
    """Lock every touched refund, claim the deliveries, record the claimed messages whose
    content is new, then recompute the refunds that gained a message."""
    if not parsed:
        return {}
    refunds = _locked_refunds(session, sorted({item.refund_key for item in parsed}))
    won = _claim(session, parsed, now)
    results: dict[int, Result] = {}
    lost = [item for item in parsed if item.delivery.key not in won]
    if lost:  # another transaction claimed the key since `_claims` read it
        claims = _claims(session, [item.delivery.key for item in lost])
        for item in lost:
            results[item.index] = _claimed_before(item.delivery, claims[item.delivery.key],
                                                  session=session)
    claimed = [item for item in parsed if item.delivery.key in won]
    recorded = _record_messages(session, claimed, now)
    latest = {key: refund.updated_at for key, refund in refunds.items()}
    for item in claimed:
        if item.index not in recorded.new:
            results[item.index] = Result(Outcome.DUPLICATE_MESSAGE, item.message.refund_id)
            continue
        before, occurred = latest[item.refund_key], item.message.occurred_at
        results[item.index] = Result(Outcome.APPLIED, item.message.refund_id,
                                     stale=before is not None and occurred < before)
        latest[item.refund_key] = occurred if before is None else max(before, occurred)
    _settle_claims(session, claimed, recorded)
    changed = sorted({item.refund_key for item in claimed if item.index in recorded.new})
    _refresh_all(session, {key: refunds[key] for key in changed}, now)
    return results


def _claims(session: Session, keys: list[DeliveryKey]) -> dict[DeliveryKey, KnownClaim]:
    if not keys:
        return {}
    query = select(DeliveryClaim.shop, DeliveryClaim.delivery_id, DeliveryClaim.refund_id,
                   DeliveryClaim.body_sha256).where(
        in_pairs(DeliveryClaim.shop, DeliveryClaim.delivery_id, keys))
    return {(row.shop, row.delivery_id): KnownClaim(row.refund_id, row.body_sha256)
            for row in session.execute(query)}


def _claim(session: Session, parsed: list[Parsed], now: datetime) -> set[DeliveryKey]:
    """Insert the claims, in key order (the order every transaction takes their locks); the
    keys this transaction won. The outcome is settled once the messages are recorded."""
    rows = [{
        "shop": item.delivery.shop,
        "delivery_id": item.delivery.delivery_id,
        "body_sha256": item.delivery.body_sha256,
        "topic": item.delivery.topic,
        "refund_id": item.message.refund_id,
        "outcome": Outcome.APPLIED.value,
        "message_id": None,
        "processed_at": now,
    } for item in sorted(parsed, key=lambda item: item.delivery.key)]
    inserted = insert_ignore_many(session, DeliveryClaim, rows, ["shop", "delivery_id"],
                                  returning=("shop", "delivery_id"))
    return {(row.shop, row.delivery_id) for row in inserted}


def _locked_refunds(session: Session, keys: list[RefundKey]) -> dict[RefundKey, Refund]:
    """Create missing refund rows, then lock them all in one fixed order (shop, refund id),
    the order every transaction uses, so two sharing refunds wait instead of deadlocking.
    Holding a refund's lock is what allows recording messages for it."""
    insert_ignore_many(session, Refund, [placeholder_row(*key) for key in keys],
                       ["shop", "refund_id"])
    query = (
        select(Refund)
        .where(in_pairs(Refund.shop, Refund.refund_id, keys))
        .order_by(Refund.shop, Refund.refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {(refund.shop, refund.refund_id): refund for refund in session.scalars(query)}


def placeholder_row(shop: str, refund_id: str) -> dict[str, Any]:
    """A refund row to hold the lock on before its first message is recorded."""
    return {
        "shop": shop,
        "refund_id": refund_id,
        "status": IN_PROGRESS,
        "fund_changes": [],
        "events_applied": 0,
    }


@dataclass(frozen=True)
class Recorded:
    new: dict[int, int]  # list position -> id of the message it recorded
    message_ids: dict[ContentKey, int]  # every claimed content's message, new or not


def _record_messages(session: Session, claimed: list[Parsed], now: datetime) -> Recorded:
    """Record the first claimed message of each content not yet recorded. Under the refunds'
    locks no other transaction records messages of these refunds meanwhile."""
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


_CLAIMS = table_of(DeliveryClaim)
_SETTLE = (
    update(_CLAIMS)
    .where(_CLAIMS.c.shop == bindparam("key_shop"),
           _CLAIMS.c.delivery_id == bindparam("key_delivery_id"))
    .values(outcome=bindparam("outcome"), message_id=bindparam("message_id"))
)


def _settle_claims(session: Session, claimed: list[Parsed], recorded: Recorded) -> None:
    """Each won claim's outcome, and the message it recorded or duplicated: one statement."""
    if not claimed:
        return
    rows = [{
        "key_shop": item.delivery.shop,
        "key_delivery_id": item.delivery.delivery_id,
        "outcome": (Outcome.APPLIED if item.index in recorded.new
                    else Outcome.DUPLICATE_MESSAGE).value,
        "message_id": recorded.message_ids[item.content_key],
    } for item in sorted(claimed, key=lambda item: item.delivery.key)]
    session.connection().execute(_SETTLE, rows)


def _refresh_all(session: Session, refunds: dict[RefundKey, Refund], now: datetime) -> None:
    if not refunds:
        return
    query = select(MessageRecord).where(
        in_pairs(MessageRecord.shop, MessageRecord.refund_id, list(refunds)))
    by_refund: dict[RefundKey, list[MessageRecord]] = defaultdict(list)
    for message in session.scalars(query):
        by_refund[(message.shop, message.refund_id)].append(message)
    for key, refund in refunds.items():
        refresh(refund, by_refund[key], now=now)


def refresh(refund: Refund, messages: Sequence[MessageRecord], *, now: datetime) -> None:
    """Recompute the refund from all its recorded messages: arrival order cannot matter."""
    state = fold(messages)
    for name in state.COLUMNS:
        setattr(refund, name, getattr(state, name))
    refund.fund_changes = [change.as_json() for change in state.fund_changes]
    refund.last_applied_at = now
