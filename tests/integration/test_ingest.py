"""The ingest against real Redis: verify, queue the raw delivery, answer; never the database."""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path

import pytest
from conftest import OLD_SECRET, SECRET, STANDARD_SECRET, make_settings
from flask import Flask, request
from flask.testing import FlaskClient
from payloads import doc_example_event, to_body
from queued_messages import envelopes, ledger_entries, queued
from signing import genstore_headers, standard_headers

from ingest import create_app
from refunds.settings import ConfigError, Settings

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
BODY = to_body(doc_example_event())


@pytest.fixture
def ingest_settings(redis_url: str, key_prefix: str) -> Settings:
    return make_settings(UNREACHABLE_DB, redis_url, key_prefix, max_body_bytes=4096)


@pytest.fixture
def client(ingest_settings: Settings) -> FlaskClient:
    app: Flask = create_app(ingest_settings)
    return app.test_client()


def post(client: FlaskClient, body: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    return client.post("/webhooks/genstore", data=body, headers=headers)


def test_signed_delivery_is_queued_raw_and_acknowledged_without_a_database(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    # given a database that cannot be reached (DATABASE_URL points nowhere)
    headers = genstore_headers(BODY, SECRET, **{"X-Genstore-Shop-Domain": "Shop.Example"})
    response = post(client, BODY, headers)
    assert response.status_code == 202
    expected_id = hashlib.sha256(b"shop.example\nrefunds/create\n" + BODY).hexdigest()
    assert response.get_json() == {"status": "accepted", "delivery_id": expected_id}
    [raw] = queued(ingest_settings)
    assert raw.body == BODY and raw.topic == "refunds/create" and raw.shop == "shop.example"
    assert raw.headers["x-genstore-hmac-sha256"] == "[redacted]"
    # what workers log and Flower shows of the task: ids, never the body
    [envelope] = envelopes(ingest_settings)
    shown = envelope["headers"]["argsrepr"] + envelope["headers"]["kwargsrepr"]
    assert expected_id in shown and "Poplar" not in shown and "body'" not in shown
    assert len(shown) < 300
    # and recorded in the ledger under the message's id, until a worker settles it
    assert ledger_entries(ingest_settings) == {envelope["headers"]["id"]: raw}
    gauges = dict(line.split() for line in client.get("/metrics").get_data(as_text=True)
                  .splitlines() if line.startswith("refund_sink_unsettled"))
    assert float(gauges["refund_sink_unsettled_deliveries"]) == 1
    assert 0 < float(gauges["refund_sink_unsettled_oldest_age_seconds"]) < 60


def test_delivery_id_header_is_used_and_rotated_secret_accepted(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    headers = genstore_headers(BODY, OLD_SECRET, **{"X-Genstore-Webhook-Id": "d-1"})
    assert post(client, BODY, headers).get_json()["delivery_id"] == "d-1"
    assert [raw.delivery_id for raw in queued(ingest_settings)] == ["d-1"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Genstore-Topic": "refunds/create"},
        genstore_headers(BODY, "wrong-secret"),
        genstore_headers(BODY, "test-genstore-secret-rotated-out"),
        genstore_headers(BODY + b" ", SECRET),
        standard_headers(BODY, "whsec_" + "QUJD" * 8),
        standard_headers(BODY, STANDARD_SECRET, timestamp=int(time.time()) - 600),
    ],
    ids=["missing", "wrong", "rotated-out", "other-body", "wrong-standard", "stale-standard"],
)
def test_bad_signatures_get_401_and_nothing_is_queued(
    client: FlaskClient, ingest_settings: Settings, headers: dict[str, str]
) -> None:
    response = post(client, BODY, headers)
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid_signature"}
    assert queued(ingest_settings) == []


def test_standard_webhooks_delivery_is_accepted_with_its_id(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    response = post(client, BODY, standard_headers(BODY, STANDARD_SECRET, msg_id="msg_42"))
    assert response.status_code == 202
    assert response.get_json()["delivery_id"] == "msg_42"
    assert queued(ingest_settings)[0].headers["webhook-signature"] == "[redacted]"


def test_oversized_body_gets_413_before_verification(
    client: FlaskClient, ingest_settings: Settings
) -> None:
    body = b"x" * 5000
    response = post(client, body, genstore_headers(body, SECRET))
    assert response.status_code == 413
    assert response.get_json() == {"error": "body_too_large"}
    assert queued(ingest_settings) == []


def test_oversized_chunked_body_gets_413(client: FlaskClient,
                                        ingest_settings: Settings) -> None:
    # a body with no Content-Length (chunked), as gunicorn passes it on
    body = b"x" * 5000
    response = client.post(
        "/webhooks/genstore", input_stream=io.BytesIO(body),
        headers=genstore_headers(body, SECRET),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert queued(ingest_settings) == []


def test_authenticated_garbage_is_still_accepted(client: FlaskClient,
                                                 ingest_settings: Settings) -> None:
    body = b"\xff not json at all"
    assert post(client, body, genstore_headers(body, SECRET)).status_code == 202
    assert queued(ingest_settings)[0].body == body


def test_unreachable_broker_and_no_spool_gets_503(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings = make_settings(UNREACHABLE_DB, "redis://127.0.0.1:1/0",
                             spool_dir=str(blocker / "spool"))
    client = create_app(settings).test_client()
    started = time.monotonic()
    response = post(client, BODY, genstore_headers(BODY, SECRET))
    assert response.status_code == 503
    assert response.get_json() == {"error": "unavailable"}
    assert time.monotonic() - started < 10
    assert client.get("/readyz/webhooks").status_code == 503


def test_readyz_names_the_dependency_that_failed(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "broker": "ok",
                                   "database": "unavailable", "spool": "empty", "spooled": 0}
    assert client.get("/healthz").status_code == 200
    # the database plays no part in taking deliveries
    assert client.get("/readyz/webhooks").get_json() == {
        "status": "ready", "broker": "ok", "spool": "empty", "spooled": 0}


def test_ingest_refuses_a_malformed_standard_secret(redis_url: str) -> None:
    settings = make_settings(UNREACHABLE_DB, redis_url, standard_webhook_secret="whsec_%%%")
    with pytest.raises(ConfigError, match="STANDARD_WEBHOOK_SECRET"):
        create_app(settings)


def test_ingest_refuses_to_start_without_a_secret(redis_url: str) -> None:
    settings = make_settings(UNREACHABLE_DB, redis_url, genstore_secrets=(),
                             standard_webhook_secret=None)
    with pytest.raises(ConfigError, match="GENSTORE_WEBHOOK_SECRET"):
        create_app(settings)


def test_the_webhook_opens_no_console_session_and_the_console_keeps_its_own(
    client: FlaskClient,
) -> None:
    # given a client holding the console's session cookie from a console page
    page = client.get("/desk/login")
    assert page.status_code == 200
    assert client.get_cookie("session") is not None
    # when it posts a delivery
    response = post(client, BODY, genstore_headers(BODY, SECRET))
    # then the delivery is accepted and the answer neither sets nor clears a session cookie
    assert response.status_code == 202
    assert "Set-Cookie" not in response.headers
    assert client.get_cookie("session") is not None
    # because the webhook's session is Flask's null session, the console's a real one
    app = client.application
    interface = app.session_interface
    with app.test_request_context("/webhooks/genstore", method="POST"):
        assert interface.is_null_session(interface.open_session(app, request))
    with app.test_request_context("/desk/login"):
        assert not interface.is_null_session(interface.open_session(app, request))
