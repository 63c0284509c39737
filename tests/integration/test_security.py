"""Security checks: constant-time signature comparison against every secret, the Standard
Webhooks replay window, signatures and secrets redacted from dead letters and logs, customer
contact details absent from logs and dead-letter errors, tokens stored hashed, and the body
limit enforced before the body is read."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
import sqlalchemy.exc
from celery.exceptions import Ignore
from conftest import OLD_SECRET, SECRET, STANDARD_SECRET, make_settings
from deliveries import batch_request
from flask.testing import FlaskClient
from payloads import doc_example_event, to_body
from queued_messages import take_queued
from signing import genstore_headers, standard_headers
from sqlalchemy import select, text

import ingest.signatures
from broker.app import make_celery
from broker.wire import to_wire
from ingest import create_app
from refunds import tokens
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter
from refunds.settings import Settings
from worker.handling import DeliveryHandler
from worker.tasks import register_tasks

THIRD_SECRET = "test-genstore-secret-third"
LOGGERS = ("", "refund_sink", "refund_sink.ingest", "refund_sink.worker", "celery",
           "celery.app.trace", "celery.worker", "kombu", "werkzeug", "flask.app")
EMAIL = "[email protected]"
CONTACT = (EMAIL, "[email protected]", "+16173034750", "16173034750", "1990 Poplar Ridge Road",
           "Poplar Ridge", "Terry")


@pytest.fixture
def settings(sqlite_url: str, redis_url: str, key_prefix: str) -> Settings:
    return make_settings(sqlite_url, redis_url, key_prefix, max_body_bytes=4096,
                         genstore_secrets=(SECRET, OLD_SECRET, THIRD_SECRET))


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the ingest, the worker handler, the task and Celery log, at DEBUG."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Messages, arguments, structured fields and tracebacks of every captured record."""
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr({key: value for key, value in vars(record).items()
                           if key not in ("msg", "args")}))
        parts.append(repr(record.args))
    return "\n".join(parts)


def dead_letter(settings: Settings, delivery_id: str) -> DeadLetter:
    with session_factory(settings)() as session:
        letter: DeadLetter = session.scalars(
            select(DeadLetter).where(DeadLetter.delivery_id == delivery_id)).one()
        return letter


def run_task(settings: Settings, raw: RawDelivery) -> Any:
    """The Celery task called as a function, as the worker would run it: the one-message
    task, or the batch task with a batch of one."""
    task = register_tasks(make_celery(settings), settings)
    task_id = f"task-{raw.delivery_id[:8]}"
    if settings.batch_size > 1:
        return task.run([batch_request(raw, task_id)])
    task.push_request(retries=0, id=task_id, called_directly=False, is_eager=False)
    try:
        with suppress(Ignore):  # a dead letter or a retry: acknowledged, shown so in Flower
            return task.run(to_wire(raw))
        return None
    finally:
        task.pop_request()


# -- constant-time comparison against every secret ---------------------------------------------

@pytest.mark.parametrize("signed_with", [SECRET, OLD_SECRET, THIRD_SECRET, "not-a-secret"])
def test_every_configured_secret_is_compared_in_constant_time(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, signed_with: str
) -> None:
    compared: list[tuple[int, int]] = []
    original = ingest.signatures.hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr(ingest.signatures.hmac, "compare_digest", counting)
    body = to_body(doc_example_event())
    response = client.post("/webhooks/genstore", data=body,
                           headers=genstore_headers(body, signed_with))
    assert response.status_code == (401 if signed_with == "not-a-secret" else 202)
    # one comparison per configured secret, whichever matched (no early exit), of digests
    assert compared == [(32, 32)] * 3


def test_the_verifier_has_no_plain_equality_on_signatures() -> None:
    import inspect

    source = inspect.getsource(ingest.signatures)
    assert "compare_digest" in source
    assert "== given" not in source and "given ==" not in source


# -- Standard Webhooks replay window -----------------------------------------------------------

@pytest.mark.parametrize(("skew", "status"), [
    (-301, 401), (301, 401), (-3600, 401), (86_400, 401), (-10**9, 401),
    (-240, 202), (240, 202), (0, 202),
])
def test_standard_webhooks_timestamp_must_be_within_five_minutes(
    client: FlaskClient, settings: Settings, skew: int, status: int
) -> None:
    body = to_body(doc_example_event())
    headers = standard_headers(body, STANDARD_SECRET, msg_id=f"msg_{skew}",
                               timestamp=int(time.time()) + skew)
    response = client.post("/webhooks/genstore", data=body, headers=headers)
    assert response.status_code == status
    assert len(take_queued(settings)) == (status == 202)


def test_standard_webhooks_body_that_is_not_utf8_still_verifies(
    client: FlaskClient, settings: Settings
) -> None:
    # the reference library signs body.decode(): a non-UTF-8 body could never verify
    body = b'{"refund": {"id": "1", "note": "\xff\xfe"}}'
    response = client.post("/webhooks/genstore", data=body,
                           headers=standard_headers(body, STANDARD_SECRET))
    assert response.status_code == 202
    assert take_queued(settings)[0].body == body


# -- signatures and secrets redacted -----------------------------------------------------------

def test_signatures_and_secrets_are_redacted_from_dead_letters_and_logs(
    client: FlaskClient, settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    body = b'{"refund": {"id": "1", "refundPrice": 1.5}}'  # invalid: dead-lettered
    genstore = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": "sec-1"})
    standard = standard_headers(body, STANDARD_SECRET, msg_id="sec-2")
    signatures = [genstore["X-Genstore-Hmac-Sha256"],
                  standard["webhook-signature"], standard["webhook-signature"][3:]]
    for headers in (genstore, standard):
        assert client.post("/webhooks/genstore", data=body, headers=headers).status_code == 202
    bad = genstore_headers(body, "wrong") | {"X-Genstore-Webhook-Id": "sec-3"}
    assert client.post("/webhooks/genstore", data=body, headers=bad).status_code == 401
    found = take_queued(settings)
    assert [raw.delivery_id for raw in found] == ["sec-1", "sec-2"]
    run_task(settings, found[0])
    DeliveryHandler(settings).handle([found[1]])
    assert dead_letter(settings, "sec-1").headers["x-genstore-hmac-sha256"] == "[redacted]"
    assert dead_letter(settings, "sec-2").headers["webhook-signature"] == "[redacted]"
    stored = json.dumps([dead_letter(settings, id_).headers for id_ in ("sec-1", "sec-2")])
    logged = everything_logged(logs)
    assert "sec-1" in logged  # the logs were captured
    for secret in (SECRET, OLD_SECRET, THIRD_SECRET, STANDARD_SECRET,
                   STANDARD_SECRET.removeprefix("whsec_"), *signatures,
                   bad["X-Genstore-Hmac-Sha256"]):
        assert secret not in logged
        assert secret not in stored


# -- customer contact details never logged ---------------------------------------------------

def contact_payloads() -> dict[str, bytes]:
    example = doc_example_event()
    with_email = doc_example_event()
    with_email["refund"]["customer"]["email"] = EMAIL
    with_email["refund"]["id"] = "10220473646"
    wrong_types = doc_example_event()
    customer = wrong_types["refund"]["customer"]
    customer.update(email=[EMAIL], phone={"number": "+16173034750"}, firstName=1.5)
    wrong_types["refund"]["refundPrice"] = 10.5
    not_an_object = {"refund": {"id": "3", "customer": f"{EMAIL} 1990 Poplar Ridge Road"}}
    nul = doc_example_event()
    nul["refund"]["note"] = f"{EMAIL}\x00+16173034750"
    return {
        "example": to_body(example),
        "email": to_body(with_email),
        "wrong_types": to_body(wrong_types),
        "not_an_object": to_body(not_an_object),
        "nul": to_body(nul),
        "truncated": to_body(with_email)[:-40],
        "unknown_status": to_body({"refund": {**with_email["refund"], "id": "4",
                                              "status": f"{EMAIL} +16173034750"}}),
    }


def test_customer_contact_details_never_reach_logs_or_dead_letter_errors(
    client: FlaskClient, settings: Settings, logs: pytest.LogCaptureFixture
) -> None:
    handler = DeliveryHandler(settings)
    payloads = contact_payloads()
    for name, body in payloads.items():
        headers = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": f"pii-{name}"})
        assert client.post("/webhooks/genstore", data=body, headers=headers).status_code == 202
    found = take_queued(settings)
    assert len(found) == len(payloads)
    for raw in found:
        if raw.delivery_id.endswith(("example", "wrong_types", "truncated")):
            run_task(settings, raw)
        else:
            handler.handle([raw])
    for name in ("wrong_types", "not_an_object", "nul", "truncated", "unknown_status"):
        letter = dead_letter(settings, f"pii-{name}")
        shown = letter.error + json.dumps(letter.errors)
        for detail in CONTACT:
            assert detail not in shown, (name, detail)
    # a transient failure whose SQL parameters and server message hold customer data
    failure = sqlalchemy.exc.OperationalError(
        "INSERT INTO refunds (note) VALUES (%(note)s)", {"note": f"{EMAIL} +16173034750"},
        Exception(f"server closed the connection\nDETAIL: Key (email)=({EMAIL}) exists"),
    )
    assert handler.on_failure(found[0], failure, attempt=1) is not None
    # a lost database gets one attempt past REFUND_SINK_MAX_RETRIES before its dead letter
    last = settings.max_retries + 1
    assert handler.on_failure(found[0], failure, attempt=last) is None
    exhausted = dead_letter(settings, found[0].delivery_id)
    logged = everything_logged(logs)
    assert "pii-example" in logged and "pii-wrong_types" in logged  # the logs were captured
    for detail in CONTACT:
        assert detail not in logged, detail
        assert detail not in exhausted.error


# -- tokens stored hashed ----------------------------------------------------------------------

def test_api_tokens_are_stored_only_as_digests(db_url: str, redis_url: str) -> None:
    settings = make_settings(db_url, redis_url)
    with session_factory(settings).begin() as session:
        token = tokens.create(["read_refunds"], name="ops", session=session)
    with session_factory(settings)() as session:
        rows = session.execute(text("SELECT * FROM api_tokens")).all()
        assert tokens.grant_of(token, session=session) == tokens.Grant(
            scopes=frozenset({"read_refunds"}))
        assert tokens.grant_of(token + "x", session=session) is None
    assert len(rows) == 1
    secret_part = token.removeprefix(tokens.TOKEN_PREFIX)
    for value in rows[0]:
        shown = str(value)
        assert token not in shown and secret_part not in shown and secret_part[:16] not in shown
    client = create_app(settings).test_client()
    authorized = {"Authorization": f"Bearer {token}"}
    assert client.get("/refunds/1", headers=authorized).status_code == 404
    assert client.get("/refunds/1").status_code == 401


# -- body limit before the body is read --------------------------------------------------------

class RecordingStream(io.RawIOBase):
    """A request body that counts what the app reads, and can refuse to be read at all."""

    def __init__(self, size: int, *, readable: bool = True):
        self.left, self.read_bytes, self.allowed = size, 0, readable

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the test client measures the stream; reading is what counts
        return True

    def tell(self) -> int:
        return 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def readinto(self, buffer: Any) -> int:
        if not self.allowed:
            raise AssertionError("the body was read")
        count = min(len(buffer), self.left)
        buffer[:count] = b"x" * count
        self.left -= count
        self.read_bytes += count
        return count


def test_declared_oversized_body_gets_413_without_being_read(
    client: FlaskClient, settings: Settings
) -> None:
    stream = RecordingStream(10**9, readable=False)
    response = client.post(
        "/webhooks/genstore", input_stream=stream,
        headers=genstore_headers(b"", SECRET),
        environ_overrides={"CONTENT_LENGTH": str(10**9)},
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "body_too_large"}
    assert stream.read_bytes == 0
    assert take_queued(settings) == []


def test_chunked_body_is_cut_off_at_the_limit(client: FlaskClient, settings: Settings) -> None:
    stream = RecordingStream(10**8)
    response = client.post(  # no Content-Length: chunked, as gunicorn passes it on
        "/webhooks/genstore", input_stream=stream,
        headers=genstore_headers(b"", SECRET, **{"Transfer-Encoding": "chunked"}),
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert settings.max_body_bytes < stream.read_bytes <= settings.max_body_bytes + 64 * 1024
    assert take_queued(settings) == []
