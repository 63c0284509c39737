"""What the refund pages read beside the refund, shaped for a template: its line items'
columns, its flags, its timeline, an archived body made readable."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.models import RawDeliveryRecord, RefundFlag


def columns(line_items: list[Any] | None) -> list[str]:
    """Every key any line item has, in the order first seen: a line shows every field the
    stored JSON holds (every money field Genstore sent included), none invented."""
    seen: dict[str, None] = {}
    for item in line_items or []:
        seen.update(dict.fromkeys(item))
    return list(seen)


def refund_flags(shop: str, refund_id: str, *, session: Session) -> Sequence[RefundFlag]:
    """The refund's flags, open and acknowledged, in the order raised. (refunds.flags pages
    every refund's flags; this one refund's few are one small query.)"""
    return session.scalars(select(RefundFlag).where(
        RefundFlag.shop == shop, RefundFlag.refund_id == refund_id).order_by(RefundFlag.id)).all()


@dataclass(frozen=True)
class ShownBody:
    """One archived body as the page shows it: JSON indented when it parses, else the text
    (bytes that are not UTF-8 shown as U+FFFD)."""

    body_sha256: str
    topic: str | None
    received_at: datetime
    headers: dict[str, Any]
    text: str
    is_json: bool


def shown_body(record: RawDeliveryRecord) -> ShownBody:
    text = record.body.decode("utf-8", errors="replace")
    try:
        text, is_json = json.dumps(json.loads(text), indent=2, ensure_ascii=False), True
    except ValueError:
        is_json = False
    return ShownBody(record.body_sha256, record.topic, record.received_at,
                     dict(sorted(record.headers.items())), text, is_json)
