"""A refund's timeline as the desk returns it: the refund, then every delivery that reached it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.api import DecimalText, IsoTime, RefundView


class EventView(BaseModel):
    """One delivery on the timeline. `occurred_at`, `kind` and `price` are what the delivery
    said; null for a conflicting body that could not be read."""

    model_config = ConfigDict(from_attributes=True)

    delivery_id: str
    received_at: IsoTime
    occurred_at: IsoTime | None
    kind: str | None
    price: DecimalText | None
    effect: str
    origin: str


class TimelineView(BaseModel):
    refund: RefundView
    events: list[EventView]
