"""Shapes the read and operations API returns. Money leaves as exact decimal strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator

from schemas.types import Amount

# "+00:00" rather than pydantic's "Z", as the SPEC's examples show.
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, return_type=str)]
DecimalText = Amount


class RefundView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    shop: str
    id: str = Field(validation_alias="refund_id")
    order_id: str | None
    status: str
    refund_price: DecimalText | None
    currency: str | None
    customer_id: str | None
    note: str | None
    created_at: IsoTime | None
    updated_at: IsoTime | None
    refunded_at: IsoTime | None
    line_items: list[dict[str, Any]] | None
    fund_changes: list[dict[str, Any]]
    events_applied: int
    # Filled by the views from `refund_flags` (`refunds.flags.open_rules`): a refund row has none.
    flags: list[str] = Field(default_factory=list,
                             description="the rules of the refund's open risk flags, sorted")


class DeadLetterView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    delivery_id: str
    topic: str | None
    shop: str
    reason: str
    error: str
    state: str
    attempts: int
    first_failed_at: IsoTime
    last_failed_at: IsoTime


class DeadLetterDetail(DeadLetterView):
    """What `dlq show` prints: the listing plus validation errors and redacted headers."""

    errors: list[dict[str, Any]]
    headers: dict[str, str]
    received_at: IsoTime
    resolved_at: IsoTime | None


class TokenView(BaseModel):
    """What `token list` prints of a token: never its value or its digest."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str | None
    scopes: list[str]
    shop: str | None
    created_at: IsoTime
    expires_at: IsoTime | None
    revoked_at: IsoTime | None

    @field_validator("scopes", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return value.split(",") if isinstance(value, str) else value
