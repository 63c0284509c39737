"""Risk flags: refunds a person should look at, raised once per rule and refund and open until
acknowledged.

The rules are pure functions (`refunds.risk`) of a refund's state, their parameters
(`refunds.risk_rules`) and, for `customer_velocity`, the creation times of the customer's
refunds around this one. The apply path raises the rules a change can trip on the refunds it
changed, in its transaction
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

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from refunds import queries
from refunds.db import in_pairs, insert_ignore_many
from refunds.models import Refund, RefundFlag
from refunds.recording import RefundKey
from refunds.risk import Details, evaluate, stuck_in_progress
from refunds.risk_rules import CustomerVelocity, RiskRules, Rule, StuckInProgress
from refunds.state import IN_PROGRESS

STATES = ("open", "acknowledged")


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
    after_id = queries.decode_id_cursor(cursor, "flags") if cursor else None
    rows = find(session=session, shop=shop, state=state, rule=rule, after_id=after_id,
                limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return FlagPage(rows, queries.encode_cursor("flags", str(rows[-1].id)) if more else None)


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

