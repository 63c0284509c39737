"""Honest errors of the read and operations API: every error is JSON `{"error", "detail"}`
(routing, methods, server limits and bugs alike, never an exception's text), a bad parameter is
a 400 in the API's own words, shops match as the ingest stores them, ids with a slash can be
fetched, and every listing is paged with cursors."""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from deliveries import apply, delivery
from flask import Flask
from flask.testing import FlaskClient
from payloads import camel_event, to_body
from processes import ingest
from werkzeug.test import TestResponse

from desk import refunds_api
from refunds import tokens
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.metrics import REJECTED
from refunds.settings import Settings


def token(settings: Settings, *scopes: str) -> dict[str, str]:
    with session_factory(settings).begin() as session:
        value = tokens.create(scopes, name="test", session=session)
    return {"Authorization": f"Bearer {value}"}


def json_error(response: TestResponse, status: int) -> dict[str, Any]:
    """The response is the API's error shape: JSON with a code and a human detail."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- routing, methods, bugs -------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/nowhere", 404),
    ("GET", "/dead-letters/1/requeue", 405),
    ("DELETE", "/refunds/7001", 405),
    ("POST", "/refunds", 405),
    ("PUT", "/orders/1/refunds", 405),
    ("GET", "/webhooks/genstore", 405),
    ("GET", "/dead-letters/abc/requeue", 404),
])
def test_unknown_paths_and_methods_are_json(client: FlaskClient, method: str, path: str,
                                            status: int) -> None:
    response = client.open(path, method=method)
    body = json_error(response, status)
    if status == 405:
        assert body["error"] == "method_not_allowed"
        assert response.headers["Allow"] and response.headers["Allow"] in body["detail"]


def test_an_unexpected_error_is_a_json_500_without_the_exception_text(
    client: FlaskClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("invalid literal for int() with base 10: 'internal-marker'")

    monkeypatch.setattr(refunds_api.queries, "refund", broken)
    response = client.get("/refunds/7001", headers=token(api_settings, "read_refunds"))
    body = json_error(response, 500)
    assert body["error"] == "internal_error"
    assert "internal-marker" not in response.get_data(as_text=True)
    assert "invalid literal" not in response.get_data(as_text=True)


def test_every_refusal_names_its_error_and_detail(client: FlaskClient,
                                                  api_settings: Settings) -> None:
    apply(api_settings, delivery(camel_event(), shop="a.example"))
    apply(api_settings, delivery(camel_event(), shop="b.example"))
    reader = token(api_settings, "read_refunds")
    writer = token(api_settings, "write_refunds")
    assert json_error(client.get("/refunds/7001"), 401)["error"] == "unauthorized"
    json_error(client.get("/refunds/7001", headers={"Authorization": "Bearer nope"}), 401)
    assert json_error(client.get("/dead-letters", headers=reader), 403)["error"] == "forbidden"
    assert json_error(client.get("/refunds/404", headers=reader), 404)["error"] == "not_found"
    ambiguous = json_error(client.get("/refunds/7001", headers=reader), 409)
    assert ambiguous["shops"] == ["a.example", "b.example"]
    json_error(client.post("/dead-letters/424242/requeue", headers=writer), 404)


def test_401_answers_carry_www_authenticate_bearer(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        response = client.get("/refunds/7001", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# -- bad parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("query", [
    "/refunds?limit=0", "/refunds?limit=-5", "/refunds?limit=abc", "/refunds?limit=501",
    "/refunds?status=bogus", "/refunds?updated_since=yesterday", "/refunds?cursor=%25%25%25",
    "/orders/77/refunds?limit=0", "/orders/77/refunds?cursor=nope",
    "/dead-letters?reason=bogus", "/dead-letters?state=bogus", "/dead-letters?limit=0",
    "/dead-letters?cursor=nope",
])
def test_a_bad_parameter_is_a_400_in_the_apis_own_words(
    client: FlaskClient, api_settings: Settings, query: str
) -> None:
    response = client.get(query, headers=token(api_settings, "write_refunds"))
    body = json_error(response, 400)
    assert body["error"] == "bad_request"
    for python_text in ("invalid literal", "isoformat", "Traceback", "Error:"):
        assert python_text not in body["detail"]


@pytest.mark.parametrize(("path", "named"), [
    ("/refunds/7001?shop=%00", "shop"), ("/refunds/70%0001", "path"),
    ("/refunds/70%0001/events", "path"), ("/refunds?shop=a%00", "shop"),
    ("/flags?shop=%00", "shop"),
    ("/reports/refunds?from=2025-03-01&to=2025-03-02&shop=%00", "shop"),
    ("/orders/9%0001/refunds", "path"), ("/refunds?x%00=1", "x"),
    ("/desk/refunds/a%00/7001", None), ("/desk/deliveries/default/d%001", None),
])
def test_a_nul_character_in_a_path_or_query_is_a_400_not_a_database_error(
    client: FlaskClient, api_settings: Settings, path: str, named: str | None
) -> None:
    # given a stored refund, so a lookup reaches the database
    apply(api_settings, delivery(camel_event()))
    # when a path or query carries a NUL, which no stored key holds and PostgreSQL refuses
    response = client.get(path, headers=token(api_settings, "write_refunds"))
    # then it is refused as a bad request naming where (the console answers with its page)
    assert response.status_code == 400, response.get_data(as_text=True)
    if named is not None:
        body = json_error(response, 400)
        assert body["error"] == "bad_request" and named in body["detail"], body


def test_a_body_too_large_elsewhere_is_not_a_rejected_delivery(
    client: FlaskClient, api_settings: Settings
) -> None:
    # given a body past the limit, posted to the console's sign-in form (which reads it)
    body = b"token=" + b"x" * api_settings.max_body_bytes
    rejected = REJECTED.labels("body_too_large")._value.get()
    response = client.post("/desk/login", data=body,
                           content_type="application/x-www-form-urlencoded")
    # then it is refused, and no delivery was counted as rejected
    assert response.status_code == 413
    assert REJECTED.labels("body_too_large")._value.get() == rejected
    # while the webhook keeps the SPEC's own answer, counted
    webhook = client.post("/webhooks/genstore", data=body)
    assert (webhook.status_code, webhook.get_json()) == (413, {"error": "body_too_large"})
    assert REJECTED.labels("body_too_large")._value.get() == rejected + 1


@pytest.mark.parametrize("letter_id", ["99999999999999999999999", str(2**63), str(2**31), "0"])
def test_a_dead_letter_id_past_the_column_is_404(client: FlaskClient, api_settings: Settings,
                                                 letter_id: str) -> None:
    response = client.post(f"/dead-letters/{letter_id}/requeue",
                           headers=token(api_settings, "write_refunds"))
    assert json_error(response, 404)["error"] == "not_found"


# -- shops, ids -------------------------------------------------------------------------------

def test_shop_matches_as_the_ingest_stores_it(client: FlaskClient,
                                              api_settings: Settings) -> None:
    headers = {"X-Genstore-Topic": "refunds/create",
               "X-Genstore-Shop-Domain": "  Shop-A.Example "}
    raw = RawDelivery.from_request(to_body(camel_event(order_id="9001")), headers,
                                   datetime.now(UTC))
    assert raw.shop == "shop-a.example"
    apply(api_settings, raw)
    reader = token(api_settings, "read_refunds")
    for shop in ("SHOP-A.example", " shop-a.example", "Shop-A.Example"):
        found = client.get(f"/refunds/7001?shop={shop}", headers=reader)
        assert found.status_code == 200 and found.get_json()["shop"] == "shop-a.example"
        listed = client.get(f"/orders/9001/refunds?shop={shop}", headers=reader).get_json()
        assert [refund["id"] for refund in listed["refunds"]] == ["7001"]


def test_refund_ids_with_a_slash_can_be_fetched(app: Flask, api_settings: Settings) -> None:
    client = app.test_client()
    apply(api_settings, delivery(camel_event(refund_id="gs/7001/b", order_id="o/1")))
    reader = token(api_settings, "read_refunds")
    for path in ("/refunds/gs/7001/b", "/refunds/gs%2F7001%2Fb"):
        response = client.get(path, headers=reader)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["id"] == "gs/7001/b"
    listed = client.get("/orders/o/1/refunds", headers=reader).get_json()
    assert [refund["id"] for refund in listed["refunds"]] == ["gs/7001/b"]
    # and the route under a refund (its timeline) still gets its own requests
    timeline = client.get("/refunds/gs/7001/b/events", headers=reader).get_json()
    assert timeline["refund"]["id"] == "gs/7001/b" and len(timeline["events"]) == 1


# -- paging -----------------------------------------------------------------------------------

def pages(client: FlaskClient, path: str, key: str, headers: dict[str, str]) -> list[list[str]]:
    seen, cursor = [], None
    while True:
        sep = "&" if "?" in path else "?"
        query = path + (f"{sep}cursor={cursor}" if cursor else "")
        page = client.get(query, headers=headers).get_json()
        seen.append([str(item["id"]) for item in page[key]])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_order_refunds_are_paged_with_cursors(client: FlaskClient,
                                              api_settings: Settings) -> None:
    for number in range(5):
        apply(api_settings, delivery(camel_event(refund_id=f"r{number}", order_id="77"),
                                     shop="b.example" if number % 2 else "a.example"))
    reader = token(api_settings, "read_refunds")
    assert pages(client, "/orders/77/refunds?limit=2", "refunds", reader) == [
        ["r0", "r2"], ["r4", "r1"], ["r3"]]
    assert pages(client, "/orders/77/refunds", "refunds", reader) == [
        ["r0", "r2", "r4", "r1", "r3"]]
    assert pages(client, "/orders/77/refunds?shop=b.example&limit=1", "refunds", reader) == [
        ["r1"], ["r3"]]


def test_dead_letters_are_paged_with_cursors(client: FlaskClient,
                                             api_settings: Settings) -> None:
    for number in range(5):
        apply(api_settings, delivery(b"{", delivery_id=f"bad-{number}"))
    apply(api_settings, delivery(camel_event(), topic="orders/create"))
    writer = token(api_settings, "write_refunds")
    everything = pages(client, "/dead-letters?reason=invalid_json", "dead_letters", writer)
    [ids] = everything
    assert len(ids) == 5
    assert pages(client, "/dead-letters?reason=invalid_json&limit=2", "dead_letters",
                 writer) == [ids[:2], ids[2:4], ids[4:]]
    assert len(pages(client, "/dead-letters?limit=3", "dead_letters", writer)) == 2


# -- the server's own limits ------------------------------------------------------------------

@pytest.fixture
def served(sqlite_url: str, redis_url: str, key_prefix: str, tmp_path: Path) -> Any:
    """The ingest under gunicorn, as `refund-sink ingest` runs it."""
    settings = make_settings(sqlite_url, redis_url, key_prefix)
    with ingest(settings, tmp_path / "ingest.log", workers=1) as port:
        yield port


def raw_request(port: int, method: str, path: str,
                headers: dict[str, str]) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        connection.close()


@pytest.mark.integration
@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/refunds/" + "7" * 9000, {}, 414),
    ("/refunds/7001", {"X-Long": "x" * 9000}, 431),
    ("/refunds/7001", {f"X-Many-{n}": "1" for n in range(120)}, 431),
    ("/nowhere", {}, 404),
])
def test_the_servers_own_refusals_are_json(served: int, path: str, headers: dict[str, str],
                                           status: int) -> None:
    got, content_type, text = raw_request(served, "GET", path, headers)
    assert got == status
    assert content_type.startswith("application/json"), text
    body = json.loads(text)
    assert body["error"] and body["detail"]
    assert "<html" not in text
