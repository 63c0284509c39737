"""Risk flags: refunds a person should look at, raised once per rule and refund and open until
acknowledged.

The rules are pure functions of a refund's state, their parameters (`refunds.risk_rules`) and,
for `customer_velocity`, the creation times of the customer's refunds around this one. The
apply path raises the rules a change can trip on the refunds it changed, in its transaction
(`raise_on_change`); `stuck_in_progress` trips with the clock alone, so a periodic
`refund-sink flags check` raises it (`check_stuck`). A flag is a row unique on (shop, refund
id, rule), inserted with ON CONFLICT DO NOTHING: a re-delivery, a refold or another check never
raises it twice, and an acknowledged flag stays acknowledged, never raised anew.

Rules see the state a transaction commits. A list of deliveries commits one state per refund
where the same deliveries one by one commit several: a price that rises over a threshold and
falls back within one list raises nothing, and refunds of one customer that arrive in one list
are all flagged where one by one only those from the N-th on are. Two transactions that each
add a refund of one customer do not see each other's, so a burst split exactly across
concurrent transactions can miss `customer_velocity`."""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from refunds import queries
from refunds.db import in_pairs, insert_ignore_many
from refunds.models import Refund, RefundFlag
from refunds.recording import RefundKey
from refunds.risk_rules import AmountOver, CustomerVelocity, RiskRules, Rule, StuckInProgress
from refunds.state import IN_PROGRESS

STATES = ("open", "acknowledged")
Details = dict[str, Any]  # the figures that raised a flag, JSON-ready (money and times as text)
Created = Sequence[tuple[datetime, int]]  # (creation time, refunds created then)


class RefundFacts(Protocol):
    """What the rules read of a refund (a `Refund` row as the fold left it)."""

    status: str
    refund_price: Decimal | None
    currency: str | None
    customer_id: str | None
    line_items: list[Any] | None
    fund_changes: list[Any]
    created_at: datetime | None
    refunded_at: datetime | None


# --- the rules -------------------------------------------------------------------------------

def amount_over(refund: RefundFacts, params: AmountOver) -> Details | None:
    threshold = params.threshold_for(refund.currency)
    price = refund.refund_price
    if price is None or price <= threshold:
        return None
    return {"price": str(price), "currency": refund.currency, "threshold": str(threshold)}


def over_line_items(refund: RefundFacts) -> Details | None:
    """The price above the sum of the line items' subtotal and tax; only when every line item
    has a subtotal (a missing tax counts as none)."""
    items = refund.line_items or []
    price = refund.refund_price
    if price is None or not items or any(item.get("subtotal") is None for item in items):
        return None
    total = sum((Decimal(item["subtotal"]) + Decimal(item.get("total_tax") or 0)
                 for item in items), Decimal(0))
    if price <= total:
        return None
    return {"price": str(price), "line_items_total": str(total), "line_items": len(items)}


def customer_velocity(refund: RefundFacts, params: CustomerVelocity,
                      created: Created) -> Details | None:
    """`params.refunds` or more refunds of the customer (this one among them) created within a
    span of `params.days` days that holds this refund's creation. `created` holds the
    customer's refunds in the shop, this one included."""
    at = refund.created_at
    if refund.customer_id is None or at is None:
        return None
    span = timedelta(days=params.days)
    ordered = sorted(created)
    times = [time for time, _ in ordered]
    counts = list(itertools.accumulate((count for _, count in ordered), initial=0))
    best = (0, at, at)
    for first, start in enumerate(times):  # the best span starts at some refund's creation
        if at - span <= start <= at:
            end = bisect.bisect_right(times, start + span)
            best = max(best, (counts[end] - counts[first], start, times[end - 1]))
    found, first_at, last_at = best
    if found < params.refunds:
        return None
    return {"customer_id": refund.customer_id, "refunds": found, "days": params.days,
            "first_created_at": first_at.isoformat(), "last_created_at": last_at.isoformat()}


def raised_after_refunded(refund: RefundFacts) -> Details | None:
    """The first fund change after `refunded` that raised the price."""
    if refund.refunded_at is None:
        return None
    for change in refund.fund_changes:
        amount, previous = change["amount"], change["previous_amount"]
        if (datetime.fromisoformat(change["at"]) > refund.refunded_at
                and amount is not None and previous is not None
                and Decimal(amount) > Decimal(previous)):
            return {"refunded_at": refund.refunded_at.isoformat(), "at": change["at"],
                    "amount": amount, "previous_amount": previous}
    return None


def stuck_in_progress(refund: RefundFacts, params: StuckInProgress,
                      now: datetime) -> Details | None:
    created = refund.created_at
    if refund.status != IN_PROGRESS or created is None or now - created <= timedelta(
            hours=params.hours):
        return None
    return {"created_at": created.isoformat(), "hours": params.hours,
            "checked_at": now.isoformat()}


def evaluate(refund: RefundFacts, rules: RiskRules, created: Created) -> dict[Rule, Details]:
    """The rules a change can trip that hold for this refund, with their figures."""
    found: dict[Rule, Details | None] = {}
    if rules.amount_over.enabled:
        found[Rule.AMOUNT_OVER] = amount_over(refund, rules.amount_over)
    if rules.over_line_items.enabled:
        found[Rule.OVER_LINE_ITEMS] = over_line_items(refund)
    if rules.customer_velocity.enabled:
        found[Rule.CUSTOMER_VELOCITY] = customer_velocity(refund, rules.customer_velocity,
                                                          created)
    if rules.raised_after_refunded.enabled:
        found[Rule.RAISED_AFTER_REFUNDED] = raised_after_refunded(refund)
    return {rule: details for rule, details in found.items() if details is not None}


# --- raising ---------------------------------------------------------------------------------

def raise_on_change(refunds: Collection[Refund], rules: RiskRules, *, session: Session,
                    now: datetime) -> dict[RefundKey, tuple[str, ...]]:
    """Evaluate the change-driven rules on these refunds, as just refolded, and raise what
    they find; the rules newly raised, sorted, per refund. At most one grouped query (when
    `customer_velocity` is on and a refund has a customer) and one INSERT (when a rule holds).
    Runs in the caller's transaction, never commits."""
    created = (_created_around(refunds, rules.customer_velocity, session=session)
               if rules.customer_velocity.enabled else {})
    found = [((refund.shop, refund.refund_id), rule, details) for refund in refunds
             for rule, details in evaluate(
                 refund, rules, created.get((refund.shop, refund.customer_id), ())).items()]
    return _insert(found, session=session, now=now)


def check_stuck(params: StuckInProgress, *, session: Session, now: datetime,
                limit: int = 1000) -> dict[RefundKey, tuple[str, ...]]:
    """Raise `stuck_in_progress` on up to `limit` refunds in progress for more than
    `params.hours` hours since they were created and not flagged for it yet; those raised.
    Call again while it returns `limit` refunds. Runs in the caller's transaction, never
    commits."""
    flagged = select(RefundFlag.id).where(
        RefundFlag.shop == Refund.shop, RefundFlag.refund_id == Refund.refund_id,
        RefundFlag.rule == Rule.STUCK_IN_PROGRESS.value)
    query = (select(Refund)
             .where(Refund.status == IN_PROGRESS, Refund.events_applied > 0,
                    Refund.created_at < now - timedelta(hours=params.hours), ~flagged.exists())
             .order_by(Refund.shop, Refund.refund_id).limit(limit))
    found = [((refund.shop, refund.refund_id), Rule.STUCK_IN_PROGRESS, details)
             for refund in session.scalars(query)
             if (details := stuck_in_progress(refund, params, now)) is not None]
    return _insert(found, session=session, now=now)


def _created_around(refunds: Collection[Refund], params: CustomerVelocity, *,
                    session: Session) -> dict[tuple[str, str | None], list[tuple[datetime, int]]]:
    """Per (shop, customer) of these refunds, how many of the customer's refunds were created
    at each time within `params.days` days of theirs: one grouped query."""
    dated = [(refund.shop, refund.customer_id, refund.created_at) for refund in refunds
             if refund.customer_id is not None and refund.created_at is not None]
    if not dated:
        return {}
    span = timedelta(days=params.days)
    times = [at for _, _, at in dated]
    query = (select(Refund.shop, Refund.customer_id, Refund.created_at,
                    func.count().label("refunds"))
             .where(in_pairs(Refund.shop, Refund.customer_id,
                             {(shop, customer) for shop, customer, _ in dated}),
                    Refund.created_at.between(min(times) - span, max(times) + span),
                    Refund.events_applied > 0)
             .group_by(Refund.shop, Refund.customer_id, Refund.created_at))
    created: dict[tuple[str, str | None], list[tuple[datetime, int]]] = defaultdict(list)
    for row in session.execute(query):
        created[(row.shop, row.customer_id)].append((row.created_at, row.refunds))
    return created


def _insert(found: Sequence[tuple[RefundKey, Rule, Details]], *, session: Session,
            now: datetime) -> dict[RefundKey, tuple[str, ...]]:
    rows = sorted(({"shop": shop, "refund_id": refund_id, "rule": rule.value,
                    "details": details, "raised_at": now}
                   for (shop, refund_id), rule, details in found),
                  key=lambda row: (row["shop"], row["refund_id"], row["rule"]))
    inserted = insert_ignore_many(session, RefundFlag, rows, ["shop", "refund_id", "rule"],
                                  returning=("shop", "refund_id", "rule"))
    raised: dict[RefundKey, list[str]] = defaultdict(list)
    for row in inserted:
        raised[(row.shop, row.refund_id)].append(row.rule)
    return {key: tuple(sorted(rules)) for key, rules in raised.items()}


# --- reading and acknowledging ---------------------------------------------------------------

@dataclass(frozen=True)
class FlagPage:
    flags: Sequence[RefundFlag]
    next_cursor: str | None


def open_rules(keys: Collection[RefundKey], *, session: Session) -> dict[RefundKey, list[str]]:
    """The rules of these refunds' open flags, sorted, in one query (a page of refunds)."""
    if not keys:
        return {}
    query = select(RefundFlag.shop, RefundFlag.refund_id, RefundFlag.rule).where(
        in_pairs(RefundFlag.shop, RefundFlag.refund_id, keys),
        RefundFlag.acknowledged_at.is_(None))
    rules: dict[RefundKey, list[str]] = defaultdict(list)
    for shop, refund_id, rule in session.execute(query):
        rules[(shop, refund_id)].append(rule)
    return {key: sorted(found) for key, found in rules.items()}


def find(*, session: Session, shop: str | None = None, state: str | None = None,
         rule: str | None = None, after_id: int | None = None,
         limit: int | None = None) -> Sequence[RefundFlag]:
    """Flags in the order they were raised (id), filtered; those after `after_id` when given;
    at most `limit` (None: all). BadParameter for an unknown state or rule."""
    if state is not None and state not in STATES:
        raise queries.BadParameter(f"state must be one of {', '.join(STATES)}")
    if rule is not None and rule not in {known.value for known in Rule}:
        raise queries.BadParameter(f"rule must be one of {', '.join(Rule)}")
    query = select(RefundFlag).order_by(RefundFlag.id).limit(limit)
    if shop is not None:
        query = query.where(RefundFlag.shop == shop)
    if state is not None:
        acknowledged = RefundFlag.acknowledged_at
        query = query.where(acknowledged.is_(None) if state == "open" else acknowledged.isnot(None))
    if rule is not None:
        query = query.where(RefundFlag.rule == rule)
    if after_id is not None:
        query = query.where(RefundFlag.id > after_id)
    return session.scalars(query).all()


def flags_page(*, session: Session, shop: str | None = None, state: str | None = None,
               rule: str | None = None, limit: int = 100, cursor: str | None = None) -> FlagPage:
    """A page of `find`, keyset-paged by id like the dead letters. BadParameter for a limit
    outside 1-500, an unknown state or rule, or a cursor this API did not return."""
    queries.check_limit(limit)
    rows = find(session=session, shop=shop, state=state, rule=rule,
                after_id=_after_id(cursor) if cursor else None, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return FlagPage(rows, queries.encode_cursor("flags", str(rows[-1].id)) if more else None)


def _after_id(cursor: str) -> int:
    kind, flag_id = queries.decode_cursor(cursor)
    if kind != "flags" or not (flag_id.isascii() and flag_id.isdigit() and len(flag_id) <= 10
                               and queries.in_id_range(int(flag_id))):
        raise queries.BadCursor("cursor is not one this API returned")
    return int(flag_id)


def acknowledge(flag_id: int, *, by: str, shop: str | None, session: Session,
                now: datetime) -> RefundFlag | None:
    """The flag, acknowledged by `by` at `now`, or as first acknowledged: a second
    acknowledgement changes nothing (one conditional UPDATE, so of two at once the first
    wins). None when no flag has this id (in this shop, when one is given). Runs in the
    caller's transaction, never commits."""
    if not queries.in_id_range(flag_id):
        return None
    this = [RefundFlag.id == flag_id, *([RefundFlag.shop == shop] if shop is not None else [])]
    session.execute(update(RefundFlag).where(*this, RefundFlag.acknowledged_at.is_(None))
                    .values(acknowledged_at=now, acknowledged_by=by))
    return session.scalars(select(RefundFlag).where(*this)
                           .execution_options(populate_existing=True)).first()

