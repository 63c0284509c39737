"""The one apply path: raw deliveries (one delivery is a list of one) archived, parsed, claimed
and folded into their refunds, all in the caller's transaction, so each delivery's dedupe
record and its effect commit together.

Each delivery that reaches a refund leaves an event on its timeline (`refunds.timeline`). A
delivery of a compliance topic (`refunds.compliance`) is archived and claimed like any other
and carried out in the same transaction, in a run of its own; it reaches no refund. So is a
`shop/update` (`refunds.shop_clock`): the shop's new zone and currency are what the deliveries
after it are read with, and its stored messages are read again when they change.
Each delivery is read with its shop's clock: naive times in the shop's zone (GENSTORE_NAIVE_TZ
for a shop without one), and a refund without a currency takes the shop's.
The outcome of each delivery, and the database afterwards, are those of applying the
deliveries one by one in their order, with a fixed number of multi-row statements per list
instead of a dozen round trips per delivery."""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds import claims, compliance, dead_letters, flags, shop_clock, shops
from refunds.archive import archive
from refunds.claims import KnownClaim, Settled
from refunds.compliance import SpoolErasure
from refunds.db import in_pairs, insert_ignore_many
from refunds.delivery import DeliveryKey, RawDelivery
from refunds.models import MessageRecord, Refund
from refunds.recording import Parsed, RefundKey, record_messages
from refunds.risk_rules import DEFAULTS as DEFAULT_RULES
from refunds.risk_rules import RiskRules
from refunds.state import IN_PROGRESS, fold
from refunds.timeline import Effect, Event, record_events
from schemas import PayloadRejected, RefundMessage, parse_delivery

NO_REFUND = ""  # the refund id of a compliance delivery's claim
T = TypeVar("T")


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
    # Risk rules raised on its refund, on one delivery per refund, for the metrics. Not part of
    # the outcome: rules see the state a transaction commits, and a list commits one state per
    # refund where one by one commits several (`refunds.flags`).
    flags: tuple[str, ...] = field(default=(), compare=False)
    # A compliance erasure's part in the spool files, for the caller once it has committed.
    spool_erasure: SpoolErasure | None = field(default=None, compare=False)


def apply_deliveries(
    deliveries: Sequence[RawDelivery], *, session: Session, naive_tz: str,
    rules: RiskRules = DEFAULT_RULES,
) -> list[Result]:
    """One Result per delivery, in the given order.

    `naive_tz` (GENSTORE_NAIVE_TZ) reads the naive times of shops without a zone of their own.
    A payload that cannot be applied is a dead letter (a Result), not an error; a (shop,
    delivery id) that already had its effect with another body is a `delivery_conflict`
    dead letter. The risk `rules` are evaluated on the refunds the list changed; what they
    raise is in the Results' `flags`. A `customers/redact` or `shop/redact` leaves in its
    Result the `spool_erasure` the caller does once committed. Raises what the
    database raises (then the whole list is to be tried again). Runs in the caller's
    transaction, never commits."""
    now = datetime.now(UTC)
    results: list[Result] = []
    events: list[Event] = []
    changed: dict[RefundKey, Refund] = {}
    registered = shops.registered(session=session)
    for run in _runs_of_distinct_keys(deliveries):
        # archived run by run, as one by one: an erasure in a run reaches what came before it
        archive(run, session=session, now=now)
        applying = _Applying(session, naive_tz, now, events, changed, registered)
        outcomes = applying.run(list(enumerate(run)))
        results.extend(outcomes[index] for index in range(len(run)))
    record_events(session, events, now)
    raised = flags.raise_on_change(changed.values(), rules, session=session, now=now)
    return _with_flags(deliveries, results, raised)


def _runs_of_distinct_keys(deliveries: Sequence[RawDelivery]) -> list[Sequence[RawDelivery]]:
    """Consecutive runs in which no (shop, delivery id) repeats: a later copy must meet the
    earlier copy's claim, as it would one by one. A compliance delivery is a run of its own:
    what it erases is what the deliveries before it stored; so is a `shop/update`: the
    deliveries after it are read with the clock it sets. Almost always a single run."""
    runs: list[Sequence[RawDelivery]] = []
    start, keys = 0, set[DeliveryKey]()
    for index, delivery in enumerate(deliveries):
        alone = _alone(delivery)
        if delivery.key in keys or (alone and index > start):
            runs.append(deliveries[start:index])
            start, keys = index, set[DeliveryKey]()
        keys.add(delivery.key)
        if alone:
            runs.append(deliveries[start:index + 1])
            start, keys = index + 1, set[DeliveryKey]()
    return [*runs, deliveries[start:]] if start < len(deliveries) else runs


@dataclass
class _Applying:
    """One run of distinct keys being applied; its deliveries' timeline events collect in
    `events`, and the refunds they changed in `changed`, shared by the runs of one list."""

    session: Session
    naive_tz: str
    now: datetime
    events: list[Event]
    changed: dict[RefundKey, Refund]
    # by domain, with their clocks; empty: no shop registered, every shop's deliveries apply.
    # Shared by the runs of one list: a `shop/update` changes it for the runs after it.
    registered: dict[str, shops.Clock]

    def run(self, items: list[tuple[int, RawDelivery]]) -> dict[int, Result]:
        results: dict[int, Result] = {}
        strangers = [(index, delivery) for index, delivery in items
                     if self.registered and delivery.shop not in self.registered]
        if strangers:  # a delivery claimed before its shop went (shop/redact) is a duplicate
            claimed = claims.known(self.session, [delivery.key for _, delivery in strangers])
            for index, delivery in strangers:
                if delivery.key not in claimed:
                    results[index] = self.unknown_shop(delivery)
            items = [(index, delivery) for index, delivery in items if index not in results]
        if len(items) == 1 and _alone(items[0][1]):
            index, delivery = items[0]
            return {**results, index: self.comply(delivery)}
        known = claims.known(self.session, [delivery.key for _, delivery in items])
        parsed: list[Parsed] = []
        for index, delivery in items:
            if (claim := known.get(delivery.key)) is not None:
                results[index] = self.claimed_before(delivery, claim)
                continue
            try:
                parsed.append(Parsed(index, delivery, self.parse(delivery)))
            except PayloadRejected as rejected:
                dead_letters.record(delivery, reason=rejected.reason, error=rejected.detail,
                                    errors=rejected.errors, session=self.session)
                results[index] = Result(Outcome.DEAD_LETTERED, reason=rejected.reason)
        results.update(self.apply_messages(parsed))
        # A delivery that has had its effect closes its dead letter, if it has one.
        dead_letters.resolve_all([delivery for index, delivery in items
                                  if results[index].outcome is not Outcome.DEAD_LETTERED],
                                 session=self.session, now=self.now)
        return results

    def unknown_shop(self, delivery: RawDelivery) -> Result:
        """A delivery naming a shop that is not registered, once shops are: kept, visible
        and requeueable as a dead letter (requeued once the shop is added, it applies)."""
        dead_letters.record(delivery, reason=dead_letters.UNKNOWN_SHOP,
                            error="the delivery names a shop that is not registered "
                                  "(refund-sink shop add)", errors=[], session=self.session)
        return Result(Outcome.DEAD_LETTERED, reason=dead_letters.UNKNOWN_SHOP)

    def parse(self, delivery: RawDelivery) -> RefundMessage:
        """The delivery's message read with its shop's clock, or PayloadRejected."""
        clock = self.registered.get(delivery.shop)
        if clock is None:
            return parse(delivery, naive_tz=self.naive_tz)
        return parse(delivery, naive_tz=clock.zone or self.naive_tz,
                     shop_currency=clock.currency)

    def comply(self, delivery: RawDelivery) -> Result:
        """A compliance delivery or a `shop/update`: claimed like any delivery (a redelivery
        is a duplicate, not a second erasure), then carried out. Its claim names no
        refund."""
        if shop_clock.is_shop_update(delivery):
            return self.update_shop(delivery)
        request = self.claim_alone(delivery, compliance.parse)
        if isinstance(request, Result):
            return request
        session = self.session
        spool_erasure = compliance.carry_out(delivery, request, session=session, now=self.now)
        if compliance.erases_shop(delivery):  # nothing of the shop is to be written after it
            self.events[:] = [event for event in self.events if event.delivery.shop
                              != delivery.shop]
            for key in [key for key in self.changed if key[0] == delivery.shop]:
                del self.changed[key]
            self.registered.pop(delivery.shop, None)  # its registration went with it
        dead_letters.resolve_all([delivery], session=session, now=self.now)
        return Result(Outcome.APPLIED, spool_erasure=spool_erasure)

    def update_shop(self, delivery: RawDelivery) -> Result:
        """A `shop/update`: claimed like a compliance delivery, then the shop's clock set and,
        when it changed, the shop's messages read again and its refunds folded again
        (`shop_clock.change`). A shop that is not registered has no clock to keep: the
        delivery is claimed and changes nothing."""
        clock = self.claim_alone(delivery, shop_clock.parse_update)
        if isinstance(clock, Result):
            return clock
        session = self.session
        if delivery.shop in self.registered:
            shop_clock.change(delivery.shop, clock, naive_tz=self.naive_tz, now=self.now,
                              session=session)
            kept = shops.registered(session=session).get(delivery.shop)
            if kept is not None:
                self.registered[delivery.shop] = kept
        dead_letters.resolve_all([delivery], session=session, now=self.now)
        return Result(Outcome.APPLIED)

    def claim_alone(self, delivery: RawDelivery, read: Callable[[RawDelivery], T]) -> T | Result:
        """Claim a delivery applied on its own (a compliance topic, `shop/update`) and return
        what `read` makes of its body; or its Result when it is not to be carried out: a
        duplicate of a claimed key with this body, a conflict with another, a dead letter
        when `read` rejects it. A key another transaction claims meanwhile is looked at
        again."""
        session = self.session
        while True:
            claim = claims.known(session, [delivery.key]).get(delivery.key)
            if claim is not None:
                if claim.body_sha256 == delivery.body_sha256:
                    dead_letters.resolve_all([delivery], session=session, now=self.now)
                    return Result(Outcome.DUPLICATE_DELIVERY)
                dead_letters.record_conflict(delivery, claim.body_sha256, session=session)
                return Result(Outcome.DEAD_LETTERED, reason=dead_letters.CONFLICT)
            try:
                request = read(delivery)
            except PayloadRejected as rejected:
                dead_letters.record(delivery, reason=rejected.reason, error=rejected.detail,
                                    errors=rejected.errors, session=session)
                return Result(Outcome.DEAD_LETTERED, reason=rejected.reason)
            if claims.claim(session, [(delivery, NO_REFUND)], self.now):
                return request

    def claimed_before(self, delivery: RawDelivery, claim: KnownClaim) -> Result:
        """The same body again is a duplicate; another body is a conflict, kept as a dead
        letter. Either is an event on the claimed refund's timeline (a conflicting body
        that can be read is shown on the refund it names); a key a compliance delivery or
        a `shop/update` claimed names no refund, so its duplicate is no refund's event."""
        if claim.body_sha256 == delivery.body_sha256:
            if claim.refund_id != NO_REFUND:
                self.events.append(Event(delivery, claim.refund_id, Effect.DUPLICATE_DELIVERY,
                                         claim.occurred_at, claim.kind, claim.price,
                                         claim.message_id))
            return Result(Outcome.DUPLICATE_DELIVERY, claim.refund_id or None)
        dead_letters.record_conflict(delivery, claim.body_sha256, session=self.session)
        try:
            said = self.parse(delivery)
        except PayloadRejected:
            if claim.refund_id != NO_REFUND:
                self.events.append(Event(delivery, claim.refund_id, Effect.CONFLICT))
        else:
            self.events.append(Event(delivery, said.refund_id, Effect.CONFLICT,
                                     said.occurred_at, said.kind, said.price))
        return Result(Outcome.DEAD_LETTERED, reason=dead_letters.CONFLICT)

    def apply_messages(self, parsed: list[Parsed]) -> dict[int, Result]:
        """Lock every touched refund, claim the deliveries, record the claimed messages
        whose content is new, then recompute the refunds that gained a message."""
        if not parsed:
            return {}
        session = self.session
        refunds = _locked_refunds(session, sorted({item.refund_key for item in parsed}))
        won = claims.claim(session, [(item.delivery, item.message.refund_id) for item in parsed],
                           self.now)
        results: dict[int, Result] = {}
        lost = [item for item in parsed if item.delivery.key not in won]
        if lost:  # another transaction claimed the key since `claims.known` read it
            known = claims.known(session, [item.delivery.key for item in lost])
            for item in lost:
                results[item.index] = self.claimed_before(item.delivery,
                                                          known[item.delivery.key])
        claimed = [item for item in parsed if item.delivery.key in won]
        recorded = record_messages(session, claimed, self.now)
        latest = {key: refund.updated_at for key, refund in refunds.items()}
        settled = []
        for item in claimed:
            message_id = recorded.message_ids[item.content_key]
            outcome = Outcome.APPLIED if item.index in recorded.new else Outcome.DUPLICATE_MESSAGE
            settled.append(Settled(item.delivery, outcome.value, message_id))
            result = Result(outcome, item.message.refund_id)
            if outcome is Outcome.APPLIED:
                before, occurred = latest[item.refund_key], item.message.occurred_at
                result = Result(outcome, item.message.refund_id,
                                stale=before is not None and occurred < before)
                latest[item.refund_key] = occurred if before is None else max(before, occurred)
            results[item.index] = result
            self.events.append(_event_of(item, result, message_id))
        claims.settle(session, settled)
        changed = sorted({item.refund_key for item in claimed if item.index in recorded.new})
        _refresh_all(session, {key: refunds[key] for key in changed}, self.now)
        self.changed.update((key, refunds[key]) for key in changed)
        return results


def _with_flags(deliveries: Sequence[RawDelivery], results: list[Result],
                raised: dict[RefundKey, tuple[str, ...]]) -> list[Result]:
    """Each refund's raised rules on the last delivery of the list that applied a message to
    it, so that counting the Results counts each flag once."""
    last = {(delivery.shop, result.refund_id): index
            for index, (delivery, result) in enumerate(zip(deliveries, results, strict=True))
            if result.outcome is Outcome.APPLIED}
    for key, rules in raised.items():
        results[last[key]] = replace(results[last[key]], flags=rules)
    return results


def _alone(delivery: RawDelivery) -> bool:
    """Applied in a run of its own: a compliance topic or a `shop/update`."""
    return compliance.is_compliance(delivery) or shop_clock.is_shop_update(delivery)


def parse(delivery: RawDelivery, *, naive_tz: str,
          shop_currency: str | None = None) -> RefundMessage:
    return parse_delivery(
        delivery.body,
        topic=delivery.topic,
        shop=delivery.shop,
        triggered_at=delivery.triggered_at,
        received_at=delivery.received_at,
        naive_tz=naive_tz,
        shop_currency=shop_currency,
    )


def _event_of(item: Parsed, result: Result, message_id: int) -> Event:
    effect = (Effect.DUPLICATE_MESSAGE if result.outcome is Outcome.DUPLICATE_MESSAGE
              else Effect.STALE if result.stale else Effect.APPLIED)
    message = item.message
    return Event(item.delivery, message.refund_id, effect, message.occurred_at, message.kind,
                 message.price, message_id)


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
