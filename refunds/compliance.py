"""The compliance topics, carried out in the apply path's transaction (`refunds.apply` claims
and archives a compliance delivery like any other, so a redelivery is a duplicate, not a
second erasure). Payload shapes, and what is assumed of them: `schemas.compliance`.

- `customers/redact` erases the customer's contact details wherever the sink keeps them:
  raw archive bodies and headers, normalized messages, dead letters, and (once the
  transaction has committed, by the worker: `broker.spool_erasure`) the spool files of its
  host (`refunds.redaction` says what goes and what stays). Ids, amounts and times stay,
  so every refund and report figure is unchanged. An archived body keeps its `body_sha256`,
  the digest of what was received: the claim and archive keys are made of it, and a
  redelivery of the original is still known. A dead letter's `body_sha256` is that of the body
  it keeps, so a requeue of the erased body resolves it.
- `shop/redact` deletes everything of the shop: refunds, messages, timeline events, flags,
  claims, archive, dead letters, API tokens scoped to it, its registration (and access token),
  and after the commit its spool files. The request's own claim and archive stay, so a
  redelivery is a duplicate.
- `customers/data_request` changes nothing: it is logged with the export command for the
  operator to run (`refund-sink export customer`), and archived like any delivery.

Each erasure leaves an `Erasure` row (topic, shop, customer id, delivery id, rows per table),
never what was erased. `carry_out` returns the spool erasure still to do, which the core
cannot do itself: the spool is the publishing side's."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from refunds import redaction
from refunds.delivery import RawDelivery
from refunds.logs import event
from refunds.models import (
    ApiToken,
    DeadLetter,
    DeliveryClaim,
    Erasure,
    MessageRecord,
    RawDeliveryRecord,
    Refund,
    RefundEvent,
    RefundFlag,
    Shop,
)
from schemas.compliance import TOPICS as TOPICS
from schemas.compliance import CustomerRequest, ShopRequest, Topic, parse_request

log = logging.getLogger("refund_sink.compliance")

Request = CustomerRequest | ShopRequest


def is_compliance(delivery: RawDelivery) -> bool:
    return delivery.topic in TOPICS


def erases_shop(delivery: RawDelivery) -> bool:
    return delivery.topic == Topic.SHOP_REDACT


def parse(delivery: RawDelivery) -> Request:
    """The request of a delivery whose topic is one of TOPICS, or PayloadRejected."""
    return parse_request(delivery.body, Topic(delivery.topic or ""))


@dataclass(frozen=True)
class SpoolErasure:
    """What to erase from the spool files once the erasure has committed: the customer's
    details in the shop's files, or (no customer) the shop's files."""

    shop: str
    customer: redaction.Customer | None


def carry_out(delivery: RawDelivery, request: Request, *, session: Session,
              now: datetime) -> SpoolErasure | None:
    """Do what the request asks, in the caller's transaction (never commits); the spool
    erasure the caller does once it has committed, if any."""
    topic = Topic(delivery.topic or "")
    if isinstance(request, ShopRequest):
        rows = erase_shop(delivery, session=session)
        customer = None
    elif topic is Topic.CUSTOMERS_DATA_REQUEST:
        _log_data_request(delivery, request)
        return None
    else:
        customer = redaction.Customer(delivery.shop, request.customer.id,
                                      request.customer.email, request.customer.phone)
        rows = erase_customer(customer, session=session)
    customer_id = None if customer is None else customer.id
    session.add(Erasure(topic=topic.value, shop=delivery.shop, customer_id=customer_id,
                        delivery_id=delivery.delivery_id, rows=rows, erased_at=now))
    event(log, "compliance erasure", topic=topic.value, shop=delivery.shop,
          customer_id=customer_id, delivery_id=delivery.delivery_id,
          rows=",".join(f"{table}:{count}" for table, count in rows.items()))
    return SpoolErasure(delivery.shop, customer)


def erase_customer(customer: redaction.Customer, *, session: Session) -> dict[str, int]:
    """Rows whose contact details were erased, per table."""
    shop = customer.shop
    archived = _rewrite_bodies(session.scalars(select(RawDeliveryRecord).where(
        RawDeliveryRecord.shop == shop)).all(), customer, keep_digest=True)
    letters = _rewrite_bodies(session.scalars(select(DeadLetter).where(
        DeadLetter.shop == shop)).all(), customer, keep_digest=False)
    messages = 0
    for record in session.scalars(select(MessageRecord).where(MessageRecord.shop == shop)):
        erased = redaction.erase_message(record.message, customer)
        note = _scrubbed(record.note, customer)
        if erased is not None:
            record.message = erased
        if note is not None:
            record.note = note
            record.message = {**record.message, "note": note}
        messages += erased is not None or note is not None
    refunds = 0
    for refund in session.scalars(select(Refund).where(Refund.shop == shop,
                                                       Refund.note.is_not(None))):
        note = _scrubbed(refund.note, customer)
        if note is not None:
            refund.note = note
            refunds += 1
    return {"raw_deliveries": archived, "refund_messages": messages, "refunds": refunds,
            "dead_letters": letters}


def _scrubbed(note: str | None, customer: redaction.Customer) -> str | None:
    """A note with the customer's e-mail and phone cut out, or None when it holds neither."""
    if note is None:
        return None
    scrubbed = customer.scrub(note)
    return None if scrubbed == note else scrubbed


def erase_shop(request: RawDelivery, *, session: Session) -> dict[str, int]:
    """Rows deleted per table. The request's own claim and archive stay (they hold the
    shop's ids only)."""
    shop = request.shop
    others = DeliveryClaim.delivery_id != request.delivery_id
    statements = {  # children before the rows they refer to
        "refund_events": delete(RefundEvent).where(RefundEvent.shop == shop),
        "deliveries": delete(DeliveryClaim).where(DeliveryClaim.shop == shop, others),
        "refund_flags": delete(RefundFlag).where(RefundFlag.shop == shop),
        "refund_messages": delete(MessageRecord).where(MessageRecord.shop == shop),
        "refunds": delete(Refund).where(Refund.shop == shop),
        "raw_deliveries": delete(RawDeliveryRecord).where(
            RawDeliveryRecord.shop == shop, RawDeliveryRecord.delivery_id != request.delivery_id),
        "dead_letters": delete(DeadLetter).where(DeadLetter.shop == shop),
        "api_tokens": delete(ApiToken).where(ApiToken.shop == shop),
        "shops": delete(Shop).where(Shop.domain == shop),
    }
    return {table: _count(session.execute(statement))
            for table, statement in statements.items()}


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


def _rewrite_bodies(rows: Sequence[RawDeliveryRecord | DeadLetter],
                    customer: redaction.Customer, *, keep_digest: bool) -> int:
    """Rewrite the bodies (and headers) that hold the customer's details; how many. The rows
    change in the session, written when it flushes."""
    changed = 0
    for row in rows:
        body = redaction.erase_body(row.body, customer)
        headers = redaction.erase_json(row.headers, customer)
        if body is not None:
            row.body = body
            if not keep_digest:
                row.body_sha256 = hashlib.sha256(body).hexdigest()
        if headers is not None:
            row.headers = headers
        changed += body is not None or headers is not None
    return changed


def _log_data_request(delivery: RawDelivery, request: CustomerRequest) -> None:
    """Ids only: the request's e-mail and phone never reach the log."""
    customer_id = request.customer.id
    selector = (f"--customer {customer_id}" if customer_id is not None
                else "--email <the e-mail in the archived request>")
    event(log, "customer data request received", shop=delivery.shop, customer_id=customer_id,
          data_request_id=request.data_request.id if request.data_request else None,
          delivery_id=delivery.delivery_id,
          command=f"refund-sink export customer --shop {delivery.shop} {selector}")
