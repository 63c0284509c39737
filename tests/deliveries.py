"""Raw deliveries as the ingest would queue them, for tests that skip HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from celery_batches import SimpleRequest
from payloads import to_body

from broker.app import TASK_NAME
from broker.wire import to_wire
from refunds import queries
from refunds.apply import Outcome, apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import Base
from refunds.settings import Settings
from schemas.api import RefundView


def delivery(
    payload: dict[str, Any] | bytes,
    *,
    delivery_id: str | None = None,
    topic: str | None = "refunds/create",
    shop: str = "default",
    received_at: datetime | None = None,
) -> RawDelivery:
    body = payload if isinstance(payload, bytes) else to_body(payload)
    headers = {"x-genstore-topic": topic} if topic else {}
    return RawDelivery(
        delivery_id=delivery_id or uuid.uuid4().hex,
        topic=topic,
        shop=shop,
        body=body,
        received_at=received_at or datetime.now(UTC),
        headers=headers,
    )


def batch_request(raw: RawDelivery, task_id: str, retries: int = 0) -> SimpleRequest:
    """The queued delivery as the batch task receives it from celery-batches."""
    return SimpleRequest(task_id, TASK_NAME, (to_wire(raw),), {}, {}, "test", True, None, None,
                         {"retries": retries})


def apply(settings: Settings, raw: RawDelivery) -> Outcome:
    with session_factory(settings).begin() as session:
        return apply_deliveries([raw], session=session, naive_tz=settings.naive_tz)[0].outcome


def view(settings: Settings, refund_id: str, shop: str = "default") -> dict[str, object]:
    with session_factory(settings)() as session:
        row = queries.refund(refund_id, shop=shop, session=session)
        assert row is not None, f"refund {refund_id} not stored"
        return RefundView.model_validate(row).model_dump(mode="json")


def clear(settings: Settings) -> None:
    with session_factory(settings).begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "api_tokens":
                session.execute(table.delete())
