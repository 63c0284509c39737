"""GET /openapi.json: a valid OpenAPI 3.1 document of every route the app serves, no more."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from flask import Flask
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from desk.openapi import OPERATIONS, PageQuery, RefundQuery, document, is_api
from ingest import create_app
from refunds import search

pytestmark = pytest.mark.unit


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    # Building the document touches no database: an empty SQLite path is enough.
    return create_app(make_settings(f"sqlite:///{tmp_path}/unused.db"))


@pytest.fixture
def served(app: Flask) -> dict[str, Any]:
    answer = app.test_client().get("/openapi.json")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    body: dict[str, Any] = answer.get_json()
    return body


def _routes(app: Flask) -> set[tuple[str, str]]:
    """(Flask rule, method) of every route of the API."""
    return {(rule.rule, method)
            for rule in app.url_map.iter_rules() if is_api(rule.endpoint)
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item}


def _as_template(rule: str) -> str:
    """/refunds/<path:refund_id> as /refunds/{refund_id}."""
    return re.sub(r"<(?:[^:>]*:)?([^>]+)>", r"{\1}", rule)


def test_the_document_is_valid_openapi_3_1(served: dict[str, Any]) -> None:
    assert served["openapi"].startswith("3.1.")
    validate(served)


def test_every_route_is_documented_and_every_operation_is_a_route(
    app: Flask, served: dict[str, Any]
) -> None:
    routes = {(_as_template(rule), method) for rule, method in _routes(app)}
    assert routes == _documented(served)
    assert set(OPERATIONS) == {rule.endpoint for rule in app.url_map.iter_rules()
                               if is_api(rule.endpoint)}


def test_a_route_without_an_operation_is_missing_from_the_document(app: Flask) -> None:
    # given a route that no Operation describes
    app.add_url_rule("/undocumented", "undocumented", lambda: "")
    # when the document is built, then it leaves the route out, which the test above reports
    assert ("/undocumented", "GET") not in _documented(document(app))
    assert ("/undocumented", "GET") in _routes(app)


def test_path_parameters_say_what_the_route_converters_let_through(
    served: dict[str, Any]
) -> None:
    [refund_id] = served["paths"]["/refunds/{refund_id}"]["get"]["parameters"][:1]
    assert refund_id == {"name": "refund_id", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": "^[^/][^\n]*$"}}
    [letter_id] = served["paths"]["/dead-letters/{letter_id}/requeue"]["post"]["parameters"]
    assert letter_id["schema"] == {"type": "integer", "minimum": 0}


def test_scoped_operations_name_their_scope_and_their_401_and_403(
    served: dict[str, Any]
) -> None:
    requeue = served["paths"]["/dead-letters/{letter_id}/requeue"]["post"]
    assert requeue["security"] == [{"bearer": ["write_refunds"]}]
    assert {"400", "401", "403", "500"} <= set(requeue["responses"])
    assert "security" not in served["paths"]["/healthz"]["get"]
    assert "401" not in served["paths"]["/healthz"]["get"]["responses"]


def test_money_and_times_are_strings_as_the_api_sends_them(served: dict[str, Any]) -> None:
    refund = served["components"]["schemas"]["RefundView"]["properties"]
    assert refund["refund_price"]["anyOf"] == [{"type": "string"}, {"type": "null"}]
    assert refund["created_at"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_optional_query_parameters_are_never_null(served: dict[str, Any]) -> None:
    parameters = {parameter["name"]: parameter
                  for parameter in served["paths"]["/refunds"]["get"]["parameters"]}
    assert parameters["shop"]["schema"] == {"type": "string"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500,
                                             "default": 100}
    assert parameters["updated_since"]["schema"] == {"type": "string", "format": "date-time"}


def test_the_refund_search_documents_every_filter_the_core_reads() -> None:
    documented = set(RefundQuery.model_fields) - set(PageQuery.model_fields)
    assert documented == set(search.FILTERS)


def test_the_error_body_is_closed(served: dict[str, Any]) -> None:
    error = served["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error", "detail"]
    assert error["additionalProperties"] is False


def test_the_validator_rejects_a_broken_document(served: dict[str, Any]) -> None:
    # The validation above would pass anything if it did not look: a response without its
    # required description must fail it.
    del served["paths"]["/healthz"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate(served)
