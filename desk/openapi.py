"""GET /openapi.json: the OpenAPI 3.1 document of the HTTP API, assembled once per app.

Nothing in it is written twice. Paths and path parameters come from the app's own routes
(`url_map`), schemas from the pydantic models the views answer with (serialization mode, so
money and times are the strings the API sends). What only people know, what each endpoint
is for, its scope, query and answers, is one `Operation` per view below, keyed by the view's
endpoint name. tests/unit/test_openapi_document.py fails while a route has no `Operation`
or an `Operation` no route, and the suite's schemathesis run checks every answer against it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaValue, models_json_schema

from refunds.dead_letters import REASONS, STATES
from refunds.queries import MAX_PAGE, STATUSES
from refunds.search import AMOUNT_DIGITS, AMOUNT_PLACES
from refunds.tokens import READ_REFUNDS, WRITE_REFUNDS
from schemas.api import RefundView
from schemas.flags import FlagPage, FlagState, FlagView, RuleName
from schemas.reports import FinanceQuery, FinanceReportView, ReasonsQuery, ReasonsReportView
from schemas.responses import (
    Accepted,
    AmbiguousRefundBody,
    DeadLetterPage,
    ErrorBody,
    ForbiddenBody,
    Liveness,
    Readiness,
    RefundPage,
    RequeueAnswer,
    WebhookReadiness,
    WebhookRefusal,
)
from schemas.timeline import TimelineView

bp = Blueprint("openapi", __name__)

REF = "#/components/schemas/{model}"
# Blueprints (the first part of an endpoint's name) that are not the API: Flask's static
# files, this document, and the console's HTML pages for people.
NOT_API = frozenset({"static", "openapi", "console"})


@dataclass(frozen=True)
class Text:
    """A plain-text answer (Prometheus' exposition)."""

    media_type: str


Answer = type[BaseModel] | Text


@dataclass(frozen=True)
class Operation:
    """What a route's rule cannot say: its purpose, scope, query or headers, and answers by
    status. With a scope, 401 and 403 are added; with path parameters, 404 (a value the
    route's converter refuses matches no route). Every operation also answers 400 (a bad
    parameter, or a NUL character anywhere in the path or query) and 500 (a bug), as JSON."""

    summary: str
    answers: Mapping[int, Answer | tuple[Answer, ...]]
    scope: str | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = field(default=())


# Query strings their views read without a model of their own (the reports have theirs).
class ShopQuery(BaseModel):
    shop: str | None = Field(None, description="the shop domain; a token for one shop sees "
                                               "only its own")


class PageQuery(ShopQuery):
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, description="next_cursor of the previous page")


def _one_of(values: Sequence[str]) -> Any:
    """A text parameter the core checks against its own list (400 for anything else)."""
    return Field(None, json_schema_extra={"enum": list(values)})


_AMOUNT = Field(None, pattern=rf"^[0-9]{{1,{AMOUNT_DIGITS}}}(\.[0-9]{{1,{AMOUNT_PLACES}}})?$",
                description="a plain decimal, such as 25.00")
_TIME = "ISO-8601; a time without an offset is UTC, a date alone its midnight"


class OrderRefundQuery(PageQuery):
    """`search.RefundFilters.from_text` reads these (the unit test keeps the names equal);
    an empty value is no filter."""

    customer_id: str | None = None
    status: str | None = _one_of(STATUSES)
    currency: str | None = None
    min_amount: str | None = _AMOUNT
    max_amount: str | None = _AMOUNT
    created_from: datetime | None = Field(None, description=f"inclusive; {_TIME}")
    created_to: datetime | None = Field(None, description=f"exclusive; {_TIME}")
    updated_since: datetime | None = Field(None, description=f"inclusive; {_TIME}")
    refunded_from: datetime | None = Field(None, description=f"first refunded at or after; "
                                                            f"{_TIME}")
    refunded_to: datetime | None = Field(None, description=f"first refunded before; {_TIME}")
    flagged: bool | None = Field(None, description="true: only refunds with an open risk "
                                                   "flag; false: only those without one")
    fund_changed: bool | None = Field(None, description="true: only refunds with a fund "
                                                        "change; false: only those without")


class RefundQuery(OrderRefundQuery):
    order_id: str | None = None


class DeadLetterQuery(PageQuery):
    reason: str | None = _one_of(REASONS)
    state: str | None = _one_of(STATES)


class FlagQuery(PageQuery):
    state: FlagState | None = None
    rule: RuleName | None = None


class WebhookHeaders(BaseModel):
    """Either Genstore's HMAC or the Standard Webhooks signature authenticates a delivery."""

    hmac: str | None = Field(None, alias="X-Genstore-Hmac-Sha256",
                             description="base64 HMAC-SHA256 of the raw body")
    topic: str | None = Field(None, alias="X-Genstore-Topic",
                              description="refunds/create, ...; required for processing")
    shop: str | None = Field(None, alias="X-Genstore-Shop-Domain",
                             description="the tenant; default when absent")
    delivery: str | None = Field(None, alias="X-Genstore-Webhook-Id",
                                 description="delivery id; else the body's SHA-256")
    triggered_at: str | None = Field(None, alias="X-Genstore-Triggered-At")
    webhook_id: str | None = Field(None, alias="webhook-id")
    webhook_timestamp: str | None = Field(None, alias="webhook-timestamp")
    webhook_signature: str | None = Field(None, alias="webhook-signature",
                                          description="v1,<base64> of id.timestamp.body")


OPERATIONS: Mapping[str, Operation] = {
    "webhooks.receive": Operation(
        "Receive a Genstore delivery: verify, queue, acknowledge",
        {202: Accepted, 401: WebhookRefusal, 413: WebhookRefusal, 503: WebhookRefusal},
        headers=WebhookHeaders,
        body={"required": True, "content": {"application/json": {"schema": {}}}},
        tags=("webhook",)),
    "refunds.get_refund": Operation(
        "One refund", {200: RefundView, 404: ErrorBody, 409: AmbiguousRefundBody},
        scope=READ_REFUNDS, query=ShopQuery, tags=("refunds",)),
    "timeline.refund_events": Operation(
        "A refund and every delivery that reached it, in the order its messages happened",
        {200: TimelineView, 404: ErrorBody, 409: AmbiguousRefundBody},
        scope=READ_REFUNDS, query=ShopQuery, tags=("refunds",)),
    "refunds.order_refunds": Operation(
        "An order's refunds, a page at a time", {200: RefundPage},
        scope=READ_REFUNDS, query=OrderRefundQuery, tags=("refunds",)),
    "refunds.list_refunds": Operation(
        "Search refunds, a page at a time", {200: RefundPage},
        scope=READ_REFUNDS, query=RefundQuery, tags=("refunds",)),
    "dead_letters.list_dead_letters": Operation(
        "Dead letters, a page at a time", {200: DeadLetterPage},
        scope=WRITE_REFUNDS, query=DeadLetterQuery, tags=("operations",)),
    "dead_letters.requeue": Operation(
        "Send a dead letter through the apply path again",
        {202: RequeueAnswer, 200: RequeueAnswer, 404: ErrorBody, 503: ErrorBody},
        scope=WRITE_REFUNDS, tags=("operations",)),
    "reports.refunds_report": Operation(
        "The finance report: per day and currency, opened, refunded and fund change net",
        {200: (FinanceReportView, Text("text/csv"))},
        scope=READ_REFUNDS, query=FinanceQuery, tags=("reports",)),
    "reports.reasons_report": Operation(
        "The after-sale reasons report, by reason and by product",
        {200: ReasonsReportView},
        scope=READ_REFUNDS, query=ReasonsQuery, tags=("reports",)),
    "flags.list_flags": Operation(
        "Risk flags in the order they were raised, a page at a time",
        {200: FlagPage}, scope=READ_REFUNDS, query=FlagQuery, tags=("flags",)),
    "flags.acknowledge": Operation(
        "Acknowledge a risk flag (a second acknowledgement changes nothing)",
        {200: FlagView, 404: ErrorBody}, scope=WRITE_REFUNDS, tags=("flags",)),
    "health.healthz": Operation("The process is alive", {200: Liveness},
                                tags=("operations",)),
    "health.readyz": Operation("The broker and the database answer",
                               {200: Readiness, 503: Readiness}, tags=("operations",)),
    "health.webhooks_ready": Operation(
        "Deliveries can be accepted durably (the load balancer's probe)",
        {200: WebhookReadiness, 503: WebhookReadiness}, tags=("operations",)),
    "metrics.metrics": Operation("Prometheus metrics", {200: Text("text/plain")},
                                 tags=("operations",)),
}


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(document(current_app))


def document(app: Flask) -> dict[str, Any]:
    """The app's OpenAPI document, built on first use and kept in `app.extensions`. Routes
    without an `Operation` are left out (the unit test names them)."""
    built: dict[str, Any] | None = app.extensions.get("openapi")
    if built is None:
        built = app.extensions["openapi"] = _build(app)
    return built


def _build(app: Flask) -> dict[str, Any]:
    models = sorted({model for op in OPERATIONS.values() for model in _models(op)},
                    key=lambda model: model.__name__)
    refs, top = models_json_schema([(model, "serialization") for model in models],
                                   ref_template=REF)
    schemas = {model: refs[(model, "serialization")] for model in models}
    components: dict[str, JsonSchemaValue] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        operation = OPERATIONS.get(rule.endpoint)
        if operation is None or not is_api(rule.endpoint):
            continue
        path, path_parameters = _path(rule.rule)
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            operation_id = rule.endpoint if len(methods) == 1 else (
                f"{rule.endpoint}.{method.lower()}")
            paths.setdefault(path, {})[method.lower()] = _operation(
                operation_id, operation, path_parameters, schemas, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Genstore refund sink", "version": "1",
                 "description": "The webhook, the read and operations API and the desk API."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "refund-sink token create"}},
        },
    }


def is_api(endpoint: str) -> bool:
    return endpoint.split(".")[0] not in NOT_API


def _models(operation: Operation) -> Iterator[type[BaseModel]]:
    for answers in _answers(operation).values():
        yield from (answer for answer in answers if not isinstance(answer, Text))


def _answers(operation: Operation, *, routed: bool = False) -> dict[int, tuple[Answer, ...]]:
    """Answers by status, each a tuple of alternatives (one per media type). `routed`: the
    path has parameters."""
    added: dict[int, Answer | tuple[Answer, ...]] = {400: ErrorBody, 500: ErrorBody}
    if routed:
        added[404] = ErrorBody
    if operation.scope:
        added |= {401: ErrorBody, 403: ForbiddenBody}
    return {status: answers if isinstance(answers, tuple) else (answers,)
            for status, answers in sorted((added | dict(operation.answers)).items())}


def _operation(operation_id: str, operation: Operation,
               path_parameters: list[dict[str, Any]],
               schemas: Mapping[type[BaseModel], JsonSchemaValue],
               components: dict[str, JsonSchemaValue]) -> dict[str, Any]:
    parameters = [*path_parameters,
                  *_parameters(operation.query, "query", components),
                  *_parameters(operation.headers, "header", components)]
    documented: dict[str, Any] = {
        "operationId": operation_id,
        "summary": operation.summary,
        "tags": list(operation.tags),
        "parameters": parameters,
        "responses": {str(status): _response(status, answer, schemas) for status, answer
                      in _answers(operation, routed=bool(path_parameters)).items()},
    }
    if operation.body is not None:
        documented["requestBody"] = dict(operation.body)
    if operation.scope:
        documented["security"] = [{"bearer": [operation.scope]}]
        documented["description"] = f"Needs a token with the {operation.scope} scope " \
                                    f"({WRITE_REFUNDS} includes {READ_REFUNDS})."
    return documented


def _response(status: int, answers: tuple[Answer, ...],
              schemas: Mapping[type[BaseModel], JsonSchemaValue]) -> dict[str, Any]:
    content = dict(_media(answer, schemas) for answer in answers)
    return {"description": HTTPStatus(status).phrase, "content": content}


def _media(answer: Answer, schemas: Mapping[type[BaseModel], JsonSchemaValue]
           ) -> tuple[str, dict[str, Any]]:
    if isinstance(answer, Text):
        return answer.media_type, {"schema": {"type": "string"}}
    return "application/json", {"schema": schemas[answer]}


# werkzeug's converters as JSON schemas: what each one lets through to the view.
_CONVERTERS: Mapping[str, dict[str, Any]] = {
    "default": {"type": "string", "pattern": "^[^/]+$"},
    "string": {"type": "string", "pattern": "^[^/]+$"},
    "path": {"type": "string", "pattern": "^[^/][^\n]*$"},  # werkzeug's `[^/].*?`
    "int": {"type": "integer", "minimum": 0},
}
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")


def _path(rule: str) -> tuple[str, list[dict[str, Any]]]:
    """A Flask rule as an OpenAPI path template and its path parameters."""
    parameters = [
        {"name": found["name"], "in": "path", "required": True,
         "schema": _CONVERTERS[found["converter"] or "default"]}
        for found in _VARIABLE.finditer(rule)
    ]
    return _VARIABLE.sub(lambda found: "{" + found["name"] + "}", rule), parameters


def _parameters(model: type[BaseModel] | None, where: str,
                components: dict[str, JsonSchemaValue]) -> list[dict[str, Any]]:
    """A flat model's fields as query or header parameters. An optional field's `null`
    is dropped: a parameter is absent or a string, never null."""
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    components.update(schema.get("$defs", {}))
    required = set(schema.get("required", ()))
    parameters = []
    for name, property_schema in schema["properties"].items():
        kept = {key: value for key, value in property_schema.items()
                if key not in ("title", "description")}
        parameter = {"name": name, "in": where, "required": name in required,
                     "schema": _without_null(kept)}
        if "description" in property_schema:
            parameter["description"] = property_schema["description"]
        parameters.append(parameter)
    return parameters


def _without_null(schema: JsonSchemaValue) -> JsonSchemaValue:
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if not options or len(options) == len(schema["anyOf"]):
        return schema
    rest = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    return {**rest, **options[0]} if len(options) == 1 else {**rest, "anyOf": options}
