"""One customer's data as the sink holds it, for the operator to hand over when Genstore sends
`customers/data_request` (`refund-sink export customer`): the customer's refunds as the API
returns them, every message recorded about them, and the deliveries that carried those
messages as they were received (after any erasure, as they are now stored).

The customer is named by id (a refund's `customer_id`), or by e-mail (the customer object a
stored message carries), or both: a refund is the customer's when either matches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds import redaction
from refunds.db import in_pairs
from refunds.models import MessageRecord, RawDeliveryRecord, Refund
from schemas.api import RefundView


def export(shop: str, *, customer_id: str | None, email: str | None, session: Session,
           now: datetime) -> dict[str, Any]:
    """The export as one JSON-ready object. Reads only, in the caller's session."""
    customer = redaction.Customer(shop, customer_id, email)
    refund_ids = {refund_id for refund_id, message in session.execute(
        select(MessageRecord.refund_id, MessageRecord.message)
        .where(MessageRecord.shop == shop)) if redaction.holds(message, customer)}
    if customer_id is not None:
        refund_ids.update(session.scalars(select(Refund.refund_id).where(
            Refund.shop == shop, Refund.customer_id == customer_id)))
    refunds = session.scalars(select(Refund).where(
        Refund.shop == shop, Refund.refund_id.in_(sorted(refund_ids)))
        .order_by(Refund.refund_id)).all()
    messages = session.scalars(
        select(MessageRecord).where(MessageRecord.shop == shop,
                                    MessageRecord.refund_id.in_(sorted(refund_ids)))
        .order_by(MessageRecord.refund_id, MessageRecord.occurred_at, MessageRecord.id)).all()
    keys = sorted({(shop, message.delivery_id) for message in messages})
    deliveries = session.scalars(select(RawDeliveryRecord).where(
        in_pairs(RawDeliveryRecord.shop, RawDeliveryRecord.delivery_id, keys))
        .order_by(RawDeliveryRecord.received_at, RawDeliveryRecord.delivery_id)).all() \
        if keys else []
    contact = _contact(messages)
    return {
        "shop": shop,
        "customer": {"id": customer_id, **contact, "email": contact["email"] or email},
        "exported_at": now.isoformat(),
        "refunds": [RefundView.model_validate(refund).model_dump(mode="json")
                    for refund in refunds],
        "messages": [{"refund_id": message.refund_id, "delivery_id": message.delivery_id,
                      "kind": message.kind, "occurred_at": message.occurred_at.isoformat(),
                      "message": message.message} for message in messages],
        "deliveries": [{"delivery_id": row.delivery_id, "topic": row.topic,
                        "received_at": row.received_at.isoformat(), "body": _body(row.body)}
                       for row in deliveries],
    }


def _contact(messages: Sequence[MessageRecord]) -> dict[str, Any]:
    """The contact details the latest message carrying any of them holds."""
    fields = redaction.MESSAGE_CONTACT_FIELDS
    for message in sorted(messages, key=lambda message: message.occurred_at, reverse=True):
        held = message.message.get("customer") or {}
        if any(held.get(name) for name in fields):
            return {name: held.get(name) for name in fields}
    return dict.fromkeys(fields)


def _body(body: bytes) -> Any:
    """The body as JSON when it is JSON, else as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
