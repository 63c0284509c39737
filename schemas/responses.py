"""The HTTP answers that views build with `jsonify` rather than from a model: the error body,
page envelopes, probes and the webhook's acknowledgement. The OpenAPI document
(`desk/openapi.py`) takes its schemas from these and from the views' own models, and the
suite's schemathesis run checks every live answer against them, so a view that changes its
answer without changing these fails a test instead of drifting from the document."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.api import DeadLetterView, RefundView


class _Closed(BaseModel):
    """No undocumented fields: the schema says `additionalProperties: false`."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Closed):
    """Every error of the read and operations API (`ingest.errors.error`)."""

    error: str = Field(description="a stable code, such as not_found or bad_request")
    detail: str = Field(description="what went wrong, in words for people")


class ForbiddenBody(ErrorBody):
    required_scope: str = Field(description="the scope the token lacks")


class AmbiguousRefundBody(ErrorBody):
    shops: list[str] = Field(description="the shops that hold a refund with this id")


class RefundPage(_Closed):
    refunds: list[RefundView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null "
                                                "on the last page")


class DeadLetterPage(_Closed):
    dead_letters: list[DeadLetterView]
    next_cursor: str | None


class RequeueAnswer(_Closed):
    status: Literal["requeued", "already_resolved"]
    id: int


class Liveness(_Closed):
    status: Literal["ok"]


Up = Literal["ok", "unavailable"]
Spool = Literal["empty", "in_use"]


class LastReconcile(_Closed):
    at: str = Field(description="when the shop's last recorded reconcile run finished "
                                "(ISO 8601)")
    outcome: Literal["ok", "unauthorized", "unavailable", "budget_exhausted", "bad_response"]


class Readiness(_Closed):
    status: Literal["ready", "unavailable"]
    broker: Up
    database: Up
    spool: Spool
    spooled: int = Field(description="deliveries waiting in the spool for the broker")
    reconcile: dict[str, LastReconcile] = Field(
        default_factory=dict,
        description="each reconciled shop's last run, by shop domain (detail only: never "
                    "changes readiness; left out while the database does not answer)")


class WebhookReadiness(_Closed):
    status: Literal["ready", "degraded", "unavailable"] = Field(
        description="degraded: the broker is down but the spool takes deliveries")
    broker: Up
    spool: Spool
    spooled: int


class Accepted(_Closed):
    status: Literal["accepted"]
    delivery_id: str


class WebhookRefusal(_Closed):
    """The webhook's refusals carry a code only: Genstore reads the status, not the body."""

    error: Literal["invalid_signature", "body_too_large", "unavailable"]
