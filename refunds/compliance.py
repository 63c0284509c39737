"""The compliance topics, carried out in the apply path's transaction (`refunds.apply` claims
and archives a compliance delivery like any other, so a redelivery is a duplicate, not a
second erasure). Payload shapes, and what is assumed of them: `schemas.compliance`.

- `customers/redact` erases the customer's contact details wherever the sink keeps them:
  raw archive bodies and headers, normalized messages, dead letters, and the spool files of
  this host (`refunds.redaction` says what goes and what stays). Ids, amounts and times stay,
  so every refund and report figure is unchanged. An archived body keeps its `body_sha256`,
  the digest of what was received: the claim and archive keys are made of it, and a
  redelivery of the original is still known. A dead letter's `body_sha256` is that of the body
  it keeps, so a requeue of the erased body resolves it.
- `shop/redact` deletes everything of the shop: refunds, messages, timeline events, flags,
  claims, archive, dead letters, API tokens scoped to it, its registration (and access token),
  its spool files. The request's own claim and archive stay, so a redelivery is a duplicate.
- `customers/data_request` changes nothing: it is logged with the export command for the
  operator to run (`refund-sink export customer`), and archived like any delivery.

Each erasure leaves an `Erasure` row (topic, shop, customer id, delivery id, rows per table),
never what was erased. Spool files are rewritten outside the transaction (files are not
transactional): a rolled-back attempt that rewrote them is tried again and rewrites nothing
more. A spool file another process holds at that moment (claimed by a drainer that is
publishing it) is rewritten all the same: the copy being published is already on its way."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from broker.wire import from_wire, to_wire
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


def carry_out(delivery: RawDelivery, request: Request, *, session: Session, now: datetime,
              spool_dir: str | None) -> None:
    """Do what the request asks, in the caller's transaction (never commits)."""
    topic = Topic(delivery.topic or "")
    if isinstance(request, ShopRequest):
        rows = erase_shop(delivery, session=session, spool_dir=spool_dir)
        customer_id = None
    elif topic is Topic.CUSTOMERS_DATA_REQUEST:
        _log_data_request(delivery, request)
        return
    else:
        customer = redaction.Customer(delivery.shop, request.customer.id,
                                      request.customer.email, request.customer.phone)
        rows = erase_customer(customer, session=session, spool_dir=spool_dir)
        customer_id = customer.id
    session.add(Erasure(topic=topic.value, shop=delivery.shop, customer_id=customer_id,
                        delivery_id=delivery.delivery_id, rows=rows, erased_at=now))
    event(log, "compliance erasure", topic=topic.value, shop=delivery.shop,
          customer_id=customer_id, delivery_id=delivery.delivery_id,
          rows=",".join(f"{table}:{count}" for table, count in rows.items()))


def erase_customer(customer: redaction.Customer, *, session: Session,
                   spool_dir: str | None) -> dict[str, int]:
    """Rows (and spool files) whose contact details were erased, per table."""
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
    spooled = _rewrite_spool(spool_dir, customer.shop, lambda delivery: _erased(delivery,
                                                                              customer))
    return {"raw_deliveries": archived, "refund_messages": messages, "refunds": refunds,
            "dead_letters": letters, "spool_files": spooled}


def _scrubbed(note: str | None, customer: redaction.Customer) -> str | None:
    """A note with the customer's e-mail and phone cut out, or None when it holds neither."""
    if note is None:
        return None
    scrubbed = customer.scrub(note)
    return None if scrubbed == note else scrubbed


def erase_shop(request: RawDelivery, *, session: Session,
               spool_dir: str | None) -> dict[str, int]:
    """Rows deleted per table, and spool files removed. The request's own claim and archive
    stay (they hold the shop's ids only)."""
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
    rows = {table: _count(session.execute(statement)) for table, statement in statements.items()}
    rows["spool_files"] = _rewrite_spool(spool_dir, shop, lambda delivery: None)
    return rows


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


def _erased(delivery: RawDelivery, customer: redaction.Customer) -> RawDelivery:
    """The delivery with the customer's details erased; the same object when it held none."""
    body = redaction.erase_body(delivery.body, customer)
    headers = redaction.erase_json(dict(delivery.headers), customer)
    if body is None and headers is None:
        return delivery
    return dataclasses.replace(delivery, body=delivery.body if body is None else body,
                               headers=delivery.headers if headers is None else headers)


def _rewrite_spool(spool_dir: str | None, shop: str,
                   change: Callable[[RawDelivery], RawDelivery | None]) -> int:
    """Each spool file of the shop: kept (change returns the same delivery), rewritten
    (another delivery) or removed (None); how many were rewritten or removed. A file is first
    renamed to a hidden name, which no drainer lists, so a drainer never claims it
    half-written; a file that is no delivery is left as it is."""
    if spool_dir is None:
        return 0
    # imported here: the spool counts quarantined files in refunds.metrics, which imports
    # the apply path, which imports this module
    from ingest.spool import Spool

    changed = 0
    for _, path in Spool(spool_dir).files():
        hidden = path.with_name(f".{path.name}.erasing")
        try:
            path.rename(hidden)
        except FileNotFoundError:
            continue  # published or moved meanwhile
        try:
            delivery = from_wire(json.loads(hidden.read_bytes()))
        except (OSError, ValueError):
            hidden.rename(path)
            continue
        outcome = change(delivery) if delivery.shop == shop else delivery
        if outcome is delivery:
            hidden.rename(path)
            continue
        if outcome is not None:
            _write(hidden, to_wire(outcome))
            hidden.rename(path)
        else:
            hidden.unlink()
        changed += 1
    return changed


def _write(path: Path, wire: dict[str, Any]) -> None:
    with path.open("wb") as out:
        out.write(json.dumps(wire).encode("ascii"))
        out.flush()
        os.fsync(out.fileno())


def _log_data_request(delivery: RawDelivery, request: CustomerRequest) -> None:
    """Ids only: the request's e-mail and phone never reach the log."""
    customer_id = request.customer.id
    selector = (f"--customer {customer_id}" if customer_id is not None
                else "--email <the e-mail in the archived request>")
    event(log, "customer data request received", shop=delivery.shop, customer_id=customer_id,
          data_request_id=request.data_request.id if request.data_request else None,
          delivery_id=delivery.delivery_id,
          command=f"refund-sink export customer --shop {delivery.shop} {selector}")
