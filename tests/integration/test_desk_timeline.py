"""`GET /refunds/<id>/events` and `refund-sink refunds show`: a refund's timeline for
after-sales service, over HTTP and at a terminal."""

from __future__ import annotations

import json

from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event, doc_example_event
from test_api import token
from test_cli import clean_env, cli

from refunds.settings import Settings


def _spec_refund(settings: Settings, shop: str = "default") -> None:
    for minute, status, price in ((9, "refunded", "20.00"), (0, "in_progress", "25.00")):
        event = camel_event(status=status, price=price,
                            update_time=f"2025-03-01T10:0{minute}:00Z")
        apply(settings, delivery(event, delivery_id=f"{shop}-{minute}", shop=shop))


def test_the_timeline_is_the_refund_and_its_events(client: FlaskClient,
                                                  api_settings: Settings) -> None:
    _spec_refund(api_settings)
    answer = client.get("/refunds/7001/events", headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["refund"]["id"] == "7001" and body["refund"]["status"] == "refunded"
    assert body["refund"]["refunded_at"] == "2025-03-01T10:09:00+00:00"
    assert body["events"][0] == {
        "delivery_id": "default-0", "received_at": body["events"][0]["received_at"],
        "occurred_at": "2025-03-01T10:00:00+00:00", "kind": "in_progress", "price": "25.00",
        "effect": "stale", "origin": "webhook"}
    assert [(e["delivery_id"], e["effect"]) for e in body["events"]] == [
        ("default-0", "stale"), ("default-9", "applied")]


def test_unknown_ambiguous_and_unauthorized(client: FlaskClient, api_settings: Settings) -> None:
    read = token(api_settings, "read_refunds")
    assert client.get("/refunds/7001/events").status_code == 401
    missing = client.get("/refunds/nope/events", headers=read)
    assert (missing.status_code, missing.get_json()["error"]) == (404, "not_found")
    _spec_refund(api_settings, "a.example")
    _spec_refund(api_settings, "b.example")
    ambiguous = client.get("/refunds/7001/events", headers=read)
    assert ambiguous.status_code == 409
    assert ambiguous.get_json()["shops"] == ["a.example", "b.example"]
    named = client.get("/refunds/7001/events?shop=b.example", headers=read).get_json()
    assert {e["delivery_id"] for e in named["events"]} == {"b.example-0", "b.example-9"}


def test_refunds_show_prints_the_timeline(api_settings: Settings) -> None:
    _spec_refund(api_settings)
    env = clean_env() | {"DATABASE_URL": api_settings.database_url}
    shown = cli("refunds", "show", "7001", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "refund 7001 (shop default, order 9001)"
    assert "refunded at 2025-03-01T10:09:00+00:00" in lines[1]
    [stale] = [line for line in lines if "default-0" in line]
    assert stale.split()[:5] == ["2025-03-01T10:00:00+00:00", "in_progress", "25.00", "stale",
                                 "webhook"]
    as_json = cli("refunds", "show", "7001", "--json", env=env)
    assert [e["effect"] for e in json.loads(as_json.stdout)["events"]] == ["stale", "applied"]


def test_refunds_show_fails_in_one_line(api_settings: Settings) -> None:
    env = clean_env() | {"DATABASE_URL": api_settings.database_url}
    missing = cli("refunds", "show", "nope", env=env)
    assert (missing.returncode, missing.stderr) == (
        1, "refund-sink: error: no refund with id nope\n")
    _spec_refund(api_settings, "a.example")
    _spec_refund(api_settings, "b.example")
    ambiguous = cli("refunds", "show", "7001", env=env)
    assert ambiguous.returncode == 1
    assert "several shops (a.example, b.example); name one with --shop" in ambiguous.stderr
    assert cli("refunds", "show", "7001", "--shop", "A.example", env=env).returncode == 0
    assert cli("refunds", "show", env=env).returncode == 2


def test_refunds_show_json_is_the_apis_object(client: FlaskClient,
                                              api_settings: Settings) -> None:
    # given a refund that raises a risk flag (the SPEC's example: 10.00 against a subtotal of 1)
    apply(api_settings, delivery(doc_example_event(), delivery_id="d-doc"))
    api = client.get("/refunds/10220473645/events",
                     headers=token(api_settings, "read_refunds")).get_json()
    env = clean_env() | {"DATABASE_URL": api_settings.database_url}
    shown = cli("refunds", "show", "10220473645", "--json", env=env)
    assert json.loads(shown.stdout) == api and api["refund"]["flags"] == ["over_line_items"]
    text = cli("refunds", "show", "10220473645", env=env).stdout
    assert "  flags      over_line_items" in text
