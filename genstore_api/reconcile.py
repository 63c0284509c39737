"""Pull reconciliation: a shop's refunds as Genstore's REST API has them, compared with the
local record, and what webhooks never delivered sent through the normal apply path.

Which orders are checked: those given (`--order`), those the sink has seen for the shop since
the window's start (a refund of theirs updated or applied since), and those Genstore's order
list returns for the window. For each, Genstore's refunds of the order against the local ones:

- `missing`: Genstore has the refund, the sink does not;
- `differs`: both have it, and the status or the price differ (Genstore's status read as the
  worker reads it; prices compared as Decimals);
- `only_local`: the sink has a refund of a checked order that Genstore does not list.

Applying sends each missing or differing refund to the queue as a `refunds/create` delivery
of origin `pulled`, its body Genstore's refund as a `{"refund": ...}` event and its delivery id
derived from that content: a second run publishes the same deliveries, which are duplicates;
a snapshot equal to a message already received is the same message (its fingerprint), and an
older one than the local state changes nothing (the fold orders by the refund's own time)."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from genstore_api.client import (
    BudgetExhausted,
    GenstoreClient,
    GenstoreError,
    Unauthorized,
    Unavailable,
)
from refunds import shops
from refunds.delivery import Origin, RawDelivery
from refunds.models import Refund
from schemas.errors import PayloadRejected
from schemas.message import parse_delivery

TOPIC = "refunds/create"
STATUS_OF_KIND = {"in_progress": "in_progress", "refunded": "refunded"}  # fund_change: none


class Outcome(enum.StrEnum):
    """How a shop's run ended (`shops.last_reconcile_outcome`)."""

    OK = "ok"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"
    BUDGET_EXHAUSTED = "budget_exhausted"
    BAD_RESPONSE = "bad_response"


@dataclass(frozen=True)
class Side:
    status: str | None
    refund_price: Decimal | None

    def as_json(self) -> dict[str, str | None]:
        price = None if self.refund_price is None else str(self.refund_price)
        return {"status": self.status, "refund_price": price}


@dataclass(frozen=True)
class Finding:
    refund_id: str
    order_id: str | None
    genstore: Side | None  # None: only local
    local: Side | None  # None: missing
    refund: dict[str, Any] | None = field(default=None, repr=False)  # Genstore's object

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"refund_id": self.refund_id, "order_id": self.order_id}
        if self.genstore is not None:
            found["genstore"] = self.genstore.as_json()
        if self.local is not None:
            found["local"] = self.local.as_json()
        return found


@dataclass
class Report:
    shop: str
    checked_orders: list[str] = field(default_factory=list)
    missing: list[Finding] = field(default_factory=list)
    differs: list[Finding] = field(default_factory=list)
    only_local: list[Finding] = field(default_factory=list)
    applied: int = 0
    outcome: Outcome = Outcome.OK
    error: str | None = None  # one line, never the token

    def as_json(self) -> dict[str, Any]:
        return {"shop": self.shop, "checked_orders": self.checked_orders,
                "missing": [f.as_json() for f in self.missing],
                "differs": [f.as_json() for f in self.differs],
                "only_local": [f.as_json() for f in self.only_local],
                "applied": self.applied, "outcome": self.outcome.value, "error": self.error}


def reconcile(client: GenstoreClient, *, session: Session, since: datetime | None,
              orders: Iterable[str] = (), now: datetime, naive_tz: str = "UTC") -> Report:
    """Compare the shop's refunds of the orders to check (see the module) with the local
    record. A failed request ends the run with its outcome and what was found until then;
    never raises a GenstoreError. Reads in the caller's session, writes nothing. A pulled
    refund's naive times, if any, are read as the worker reads them: in the shop's zone,
    `naive_tz` (GENSTORE_NAIVE_TZ) when it has none."""
    report = Report(shop=client.shop)
    clock = shops.registered(session=session).get(client.shop)
    naive_tz = clock.zone if clock is not None and clock.zone else naive_tz

    def check(order_ids: Iterable[str]) -> None:
        for order_id in order_ids:
            if order_id not in report.checked_orders:
                pulled = client.order_refunds(order_id)
                local = local_refunds(client.shop, order_id, session=session)
                _compare(report, order_id, pulled, local, naive_tz, now)
                report.checked_orders.append(order_id)

    try:  # the orders known without asking first: a listing that fails loses none of them
        check([*orders, *seen_orders(client.shop, since, session=session)])
        check(client.order_ids(updated_at_min=since, updated_at_max=now))
    except GenstoreError as error:
        report.outcome, report.error = _outcome_of(error), str(error)
    return report


def apply(report: Report, publish: Callable[[RawDelivery], object], *, now: datetime) -> int:
    """Publish each missing or differing refund as a pulled delivery; how many were
    published (also in `report.applied`). Raises what `publish` raises."""
    for finding in [*report.missing, *report.differs]:
        if finding.refund is not None:
            publish(pulled_delivery(report.shop, finding.refund, received_at=now))
            report.applied += 1
    return report.applied


def pulled_delivery(shop: str, refund: dict[str, Any], *, received_at: datetime) -> RawDelivery:
    """Genstore's refund as a webhook event; the delivery id a digest of shop, refund id and
    canonical body, so the same snapshot is always the same delivery."""
    body = json.dumps({"refund": refund}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()
    refund_id = str(refund.get("id") or refund.get("refundId") or "")
    digest = hashlib.sha256(b"\x00".join([shop.encode(), refund_id.encode(), body]))
    return RawDelivery(delivery_id=f"pulled-{digest.hexdigest()}", topic=TOPIC, shop=shop,
                       body=body, received_at=received_at, headers={"x-genstore-topic": TOPIC},
                       origin=Origin.PULLED)


def seen_orders(shop: str, since: datetime | None, *, session: Session) -> list[str]:
    """The orders of the shop's refunds updated or applied since `since` (all, without)."""
    query = select(Refund.order_id).where(Refund.shop == shop, Refund.order_id.is_not(None))
    if since is not None:
        query = query.where(or_(Refund.updated_at >= since, Refund.last_applied_at >= since))
    return sorted({order for order in session.scalars(query.distinct()) if order})


def local_refunds(shop: str, order_id: str, *, session: Session) -> dict[str, Refund]:
    query = select(Refund).where(Refund.shop == shop, Refund.order_id == order_id)
    return {refund.refund_id: refund for refund in session.scalars(query)}


def _compare(report: Report, order_id: str, pulled: list[dict[str, Any]],
             local: dict[str, Refund], naive_tz: str, now: datetime) -> None:
    for refund in pulled:
        refund_id, theirs = _read(report.shop, refund, naive_tz, now)
        mine = local.pop(refund_id, None)
        if mine is None:
            report.missing.append(Finding(refund_id, order_id, theirs, None, refund))
            continue
        ours = Side(mine.status, mine.refund_price)
        status_differs = theirs.status is not None and theirs.status != ours.status
        if status_differs or theirs.refund_price != ours.refund_price:
            report.differs.append(Finding(refund_id, order_id, theirs, ours, refund))
    for refund_id, mine in sorted(local.items()):
        report.only_local.append(
            Finding(refund_id, order_id, None, Side(mine.status, mine.refund_price)))


def _read(shop: str, refund: dict[str, Any], naive_tz: str,
          now: datetime) -> tuple[str, Side]:
    """The refund id, status and price as the worker would read them; a refund the worker
    would dead-letter keeps its raw id and no status or price (still reported)."""
    body = json.dumps({"refund": refund}).encode()
    try:
        message = parse_delivery(body, topic=TOPIC, shop=shop, triggered_at=None,
                                 received_at=now, naive_tz=naive_tz)
    except PayloadRejected:
        return str(refund.get("id") or refund.get("refundId") or ""), Side(None, None)
    return message.refund_id, Side(STATUS_OF_KIND.get(message.kind), message.price)


def _outcome_of(error: GenstoreError) -> Outcome:
    if isinstance(error, Unauthorized):
        return Outcome.UNAUTHORIZED
    if isinstance(error, Unavailable):
        return Outcome.UNAVAILABLE
    if isinstance(error, BudgetExhausted):
        return Outcome.BUDGET_EXHAUSTED
    return Outcome.BAD_RESPONSE
