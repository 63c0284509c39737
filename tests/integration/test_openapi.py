"""schemathesis against the live app, on SQLite and PostgreSQL: every operation of
GET /openapi.json, called with generated parameters and a write_refunds token, answers
without a server error, with a documented status and content type, in its documented shape.

The webhook is in the run too, unsigned: every generated body and header set must be refused
with its documented 401 (the signature cannot be guessed), so nothing reaches the queue."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import make_settings
from deliveries import apply, delivery
from flask import Flask
from hypothesis import HealthCheck, given, settings, strategies
from payloads import camel_event, doc_example_event
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from desk.openapi import OPERATIONS
from ingest import create_app
from refunds import tokens
from refunds.db import session_factory
from refunds.models import DeadLetter, RefundFlag
from refunds.settings import Settings

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture
def live_settings(db_url: str, redis_url: str, key_prefix: str) -> Settings:
    """A store with something to find: the SPEC's refund, an order of three, one refund id in
    two shops (409 without ?shop=), a refund over the default amount_over threshold (a risk
    flag) and a dead letter."""
    found = make_settings(db_url, redis_url, key_prefix)
    apply(found, delivery(doc_example_event()))
    for number in range(3):
        apply(found, delivery(camel_event(refund_id=f"50{number}", order_id="77")))
    for shop in ("one.example", "two.example"):
        apply(found, delivery(camel_event(refund_id="600"), shop=shop))
    apply(found, delivery(camel_event(refund_id="700", price="5000.00")))
    apply(found, delivery(b"not json"))
    return found


@pytest.fixture
def live_app(live_settings: Settings) -> Flask:
    return create_app(live_settings)


@pytest.fixture
def live_schema(live_app: Flask) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_wsgi("/openapi.json", live_app)


@pytest.fixture
def known_ids(live_settings: Settings) -> dict[str, list[object]]:
    """Path parameters the store holds, drawn among the generated ones: a generated id is
    almost never stored, so without these only 404s of those operations would be checked."""
    with session_factory(live_settings)() as session:
        letters = list(session.scalars(select(DeadLetter.id)))
        flags = list(session.scalars(select(RefundFlag.id)))
    assert letters
    assert flags
    return {"refund_id": ["10220473645", "600", "700"], "order_id": ["77"],
            "letter_id": letters, "flag_id": flags}


@pytest.fixture
def write_token(live_settings: Settings) -> dict[str, str]:
    with session_factory(live_settings).begin() as session:
        value = tokens.create(["write_refunds"], name="schemathesis", session=session)
    return {"Authorization": f"Bearer {value}"}


# Negative cases need something to break: operations with a query string.
RUNS = [pytest.param(operation_id, GenerationMode.POSITIVE, id=f"{operation_id}-positive")
        for operation_id in sorted(OPERATIONS)] + [
        pytest.param(operation_id, GenerationMode.NEGATIVE, id=f"{operation_id}-negative")
        for operation_id, operation in sorted(OPERATIONS.items()) if operation.query]


@pytest.mark.parametrize(("operation_id", "mode"), RUNS)
def test_every_operation_keeps_to_the_document(
    live_schema: schemathesis.BaseSchema, write_token: dict[str, str],
    known_ids: dict[str, list[object]], operation_id: str, mode: GenerationMode,
) -> None:
    """Positive cases follow the document's parameter schemas, negative ones break them (and
    must get a documented 4xx). schemathesis' own pytest loader for fixtures does not run on
    pytest 9.2 (it sets a node attribute pytest renamed), so each operation's strategy drives
    a hypothesis test here, one per operation id, which also names the failing operation."""
    operation = live_schema.find_operation_by_id(operation_id)

    @given(case=operation.as_strategy(generation_mode=mode), data=strategies.data())
    @settings(max_examples=25, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case, data: strategies.DataObject) -> None:
        if mode is GenerationMode.POSITIVE:
            _toward_the_store(case, known_ids, data)
        response = case.call_and_validate(headers=write_token, checks=CHECKS)
        if case.path == "/webhooks/genstore":
            assert response.status_code in (401, 413)

    call()


# The deliveries' days: a generated pair of dates is almost never a valid report interval.
STORED_INTERVAL = {"from": "2024-12-01", "to": "2025-04-01"}


def _toward_the_store(case: schemathesis.Case, known_ids: dict[str, list[object]],
                      data: strategies.DataObject) -> None:
    """Some cases ask for what the store holds (a stored id, the deliveries' days), so the
    answers with content are checked as well as the 404s and 400s."""
    for name, stored in known_ids.items():
        if name in (case.path_parameters or {}):
            case.path_parameters[name] = data.draw(
                strategies.sampled_from([case.path_parameters[name], *stored]))
    if case.query and "from" in case.query and data.draw(strategies.booleans()):
        case.query.update(STORED_INTERVAL)
        if "format" in case.operation.query:
            case.query["format"] = data.draw(strategies.sampled_from(["json", "csv"]))
