"""Each shop's own clock and currency: the `shop/update` topic that announces them, and the
recompute that re-reads a shop's stored messages once its zone (or currency) changed.

What is known and assumed of Genstore's naive times (the README repeats this):
- Genstore's webhook example writes `updateTime` without an offset (`"2024-12-31 00:00:00"`)
  while its REST examples carry one (`-04:00`); the docs do not say which zone a naive time
  is in. Assumed: the shop's own zone, `ianaTimezone` of `GET /api/202412/shops/info`.
  An unregistered shop's, or a shop whose zone is unknown, are read in GENSTORE_NAIVE_TZ.
- `shop/update` (assumed after the shop object and the store-update webhook of the platform
  Genstore's API follows): the body is the shop object, at the top or under `shop`, with
  `iana_timezone` or `ianaTimezone`, and `currency` or `currencyCode`. Absent fields leave the
  stored value as it is; an unknown zone or a malformed currency is an `invalid_payload`.

Recompute. A zone change moves the UTC instant of each naive time, so the shop's stored
messages are read again from the raw body their delivery archived (the stored message JSON
holds the time in UTC only: the naive text is gone from it), and their `occurred_at`,
`created_at` and `currency` rewritten; then the refunds are folded again. Times with an offset
read the same in any zone. A message's fingerprint is kept as recorded, never recomputed:
it names the message in the `(shop, refund id, fingerprint)` key, and recomputed under the new
zone a naive message could take the fingerprint of another stored message (a naive 10:00 read
in UTC and the same content at 10:00-04:00 become one content in New York), which the key
cannot hold; the fold only uses it to break ties. The cost: a new delivery (another delivery
id) of a naive body recorded before the change has another fingerprint than the stored
message, so it is recorded as a second message with the same content (a redelivery under
the same delivery id is a duplicate as ever). Timeline events keep the time read when they
happened."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds import shops
from refunds.delivery import TRIGGERED_AT_HEADER, RawDelivery
from refunds.logs import event
from refunds.models import DeliveryClaim, MessageRecord, RawDeliveryRecord, Refund
from refunds.state import fold
from schemas import PayloadRejected, RefundMessage, parse_delivery

TOPIC = "shop/update"
log = logging.getLogger("refund_sink.shops")


def is_shop_update(delivery: RawDelivery) -> bool:
    return delivery.topic == TOPIC


def parse_update(delivery: RawDelivery) -> shops.Clock:
    """The zone and currency a `shop/update` announces (None where it says nothing), or
    PayloadRejected."""
    try:
        body = json.loads(delivery.body)
    except (ValueError, UnicodeDecodeError):
        raise PayloadRejected("invalid_json", "body is not JSON") from None
    if isinstance(body, dict) and isinstance(body.get("shop"), dict):
        body = body["shop"]
    if not isinstance(body, dict):
        raise PayloadRejected("invalid_json", "body is not a JSON object")
    zone = _text(body, "iana_timezone", "ianaTimezone")
    currency = _text(body, "currency", "currencyCode")
    try:
        return shops.Clock(None if zone is None else shops.checked_zone(zone),
                           None if currency is None else shops.checked_currency(currency))
    except ValueError as error:
        raise PayloadRejected("invalid_payload", str(error)) from None


def _text(body: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True)
class Recomputed:
    messages: int  # stored messages whose time or currency was read anew
    refunds: int  # refunds whose state changed
    unreadable: int  # messages whose archived body is gone or no longer parses: kept as is


def change(domain: str, clock: shops.Clock, *, naive_tz: str, now: datetime,
           session: Session) -> Recomputed | None:
    """Set the shop's clock (`shops.set_clock`) and, when that changed its zone or currency,
    recompute its messages and refunds; None when the shop is not registered. In the caller's
    transaction."""
    before = shops.set_clock(domain, clock, session=session)
    if before is None:
        return None
    after = shops.registered(session=session)[domain]
    if after == before:
        return Recomputed(0, 0, 0)
    event(log, "shop clock changed", shop=domain, zone=after.zone, currency=after.currency,
          zone_before=before.zone, currency_before=before.currency)
    return recompute(domain, naive_tz=naive_tz, now=now, session=session)


def recompute(domain: str, *, naive_tz: str, now: datetime, session: Session) -> Recomputed:
    """Read the shop's stored messages again in its zone (GENSTORE_NAIVE_TZ, `naive_tz`, when
    it has none) with its currency, and fold the refunds whose messages changed. Idempotent:
    a second run changes nothing. Locks the shop's refunds in the one order the apply path
    uses, since rewriting their messages is recording."""
    clock = shops.registered(session=session).get(domain, shops.Clock(None, None))
    refunds = {(refund.shop, refund.refund_id): refund for refund in session.scalars(
        select(Refund).where(Refund.shop == domain).order_by(Refund.shop, Refund.refund_id)
        .with_for_update().execution_options(populate_existing=True))}
    bodies = _archived_bodies(domain, session)
    messages = list(session.scalars(select(MessageRecord).where(MessageRecord.shop == domain)
                                    .order_by(MessageRecord.id)))
    changed_messages, unreadable = 0, 0
    touched: set[tuple[str, str]] = set()
    for record in messages:
        raw = bodies.get(record.delivery_id)
        read = None if raw is None else _read(raw, clock, naive_tz)
        if read is None or read.refund_id != record.refund_id:
            unreadable += 1
            continue
        if (read.occurred_at, read.created_at, read.currency) == (
                record.occurred_at, record.created_at, record.currency):
            continue
        record.occurred_at, record.created_at = read.occurred_at, read.created_at
        record.currency = read.currency
        fresh = read.model_dump(mode="json")
        record.message = {**record.message, **{name: fresh[name] for name in
                                               ("occurred_at", "created_at", "currency")}}
        changed_messages += 1
        touched.add((record.shop, record.refund_id))
    by_refund: dict[tuple[str, str], list[MessageRecord]] = {key: [] for key in touched}
    for record in messages:
        if (record.shop, record.refund_id) in by_refund:
            by_refund[(record.shop, record.refund_id)].append(record)
    changed_refunds = sum(_refold(refunds[key], by_refund[key], now) for key in sorted(touched)
                          if key in refunds)
    event(log, "shop recomputed", shop=domain, zone=clock.zone or naive_tz,
          messages=changed_messages, refunds=changed_refunds, unreadable=unreadable)
    return Recomputed(changed_messages, changed_refunds, unreadable)


def _archived_bodies(domain: str, session: Session) -> dict[str, RawDelivery]:
    """Each claimed delivery of the shop as archived with the body its claim names."""
    claimed = {row.delivery_id: row.body_sha256 for row in session.execute(
        select(DeliveryClaim.delivery_id, DeliveryClaim.body_sha256)
        .where(DeliveryClaim.shop == domain))}
    found = {}
    for row in session.scalars(select(RawDeliveryRecord).where(RawDeliveryRecord.shop == domain)):
        if claimed.get(row.delivery_id) == row.body_sha256:
            found[row.delivery_id] = RawDelivery(
                delivery_id=row.delivery_id, topic=row.topic, shop=row.shop, body=row.body,
                received_at=row.received_at, triggered_at=row.headers.get(TRIGGERED_AT_HEADER),
                headers=row.headers)
    return found


def _read(delivery: RawDelivery, clock: shops.Clock, naive_tz: str) -> RefundMessage | None:
    try:
        return parse_delivery(delivery.body, topic=delivery.topic, shop=delivery.shop,
                              triggered_at=delivery.triggered_at,
                              received_at=delivery.received_at,
                              naive_tz=clock.zone or naive_tz, shop_currency=clock.currency)
    except PayloadRejected:
        return None


def _refold(refund: Refund, messages: Iterable[MessageRecord], now: datetime) -> bool:
    """Fold the refund again; whether its state changed."""
    state = fold(list(messages))
    fund_changes = [change.as_json() for change in state.fund_changes]
    before = [getattr(refund, name) for name in state.COLUMNS] + [refund.fund_changes]
    after = [getattr(state, name) for name in state.COLUMNS] + [fund_changes]
    if before == after:
        return False
    for name in state.COLUMNS:
        setattr(refund, name, getattr(state, name))
    refund.fund_changes = fund_changes
    refund.last_applied_at = now
    return True
