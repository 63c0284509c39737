"""A UTF-8 byte order mark before a JSON body: RFC 8259 lets a parser ignore it, so the
delivery is read as the JSON after it, never dead-lettered invalid_json."""

from __future__ import annotations

import hashlib

from deliveries import apply, delivery, view
from payloads import camel_event, to_body
from sqlalchemy import func, select

from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import DeadLetter, DeliveryClaim
from refunds.settings import Settings
from schemas.compliance import Topic, parse_request

BOM = "\ufeff".encode()


def test_a_refund_body_after_a_bom_is_applied_and_archived_as_received(
    settings: Settings,
) -> None:
    body = BOM + to_body(camel_event(refund_id="41", price="12.50"))

    outcome = apply(settings, delivery(body, delivery_id="bom-1"))

    assert outcome is Outcome.APPLIED
    assert view(settings, "41")["refund_price"] == "12.50"
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
        claim = session.get(DeliveryClaim, ("default", "bom-1"))
    assert claim is not None and claim.body_sha256 == hashlib.sha256(body).hexdigest()


def test_a_bom_alone_or_before_broken_json_is_still_invalid_json(settings: Settings) -> None:
    for body in (BOM, BOM + b'{"refund": {"id": "1",', BOM + BOM + to_body(camel_event())):
        assert apply(settings, delivery(body)) is Outcome.DEAD_LETTERED
    with session_factory(settings)() as session:
        reasons = session.scalars(select(DeadLetter.reason)).all()
    assert reasons == ["invalid_json"] * 3


def test_a_compliance_request_after_a_bom_is_read() -> None:
    request = parse_request(BOM + b'{"customer": {"id": 7}}', Topic.CUSTOMERS_REDACT)

    assert request.customer.id == "7"  # type: ignore[union-attr]
