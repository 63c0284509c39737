"""Hostile input, property-based: whatever arrives, the ingest answers 202, 401 or 413 (never
5xx), and every accepted delivery ends applied, duplicate or dead-lettered with a known
reason, never an exception. The strategies live in tests/fuzz.py, which also runs them
100,000 times (docs/fuzzing.md); here they run at CI size, scaled by FUZZ_EXAMPLES."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import SECRET, make_settings
from deliveries import apply
from flask.testing import FlaskClient
from fuzz import ACCEPTED, LIMIT, RAW_BODIES, Request, bodies, requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from queued_messages import take_queued
from signing import genstore_headers
from sqlalchemy import select

from ingest import create_app
from refunds import dead_letters
from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter
from refunds.settings import Settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
CI_SIZED = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture
def ingest(sqlite_url: str, redis_url: str, key_prefix: str) -> tuple[FlaskClient, Settings]:
    settings = make_settings(sqlite_url, redis_url, key_prefix, max_body_bytes=LIMIT)
    return create_app(settings).test_client(), settings


def assert_ends_well(settings: Settings, raw: RawDelivery) -> Outcome:
    """Applied, a duplicate, or a dead letter with a known reason; never an exception."""
    outcome = apply(settings, raw)
    assert outcome in set(Outcome)
    if outcome is Outcome.DEAD_LETTERED:
        with session_factory(settings)() as session:
            # one letter per (shop, delivery id); a conflict's under an id of its own, so
            # the one this delivery just wrote is the newer (examples share a database)
            ids = (raw.delivery_id, dead_letters.conflicting(raw).delivery_id)
            letter = session.scalars(
                select(DeadLetter).where(DeadLetter.shop == raw.shop,
                                         DeadLetter.delivery_id.in_(ids))
                .order_by(DeadLetter.last_failed_at.desc()).limit(1)
            ).one()
            assert letter.reason in dead_letters.REASONS
    return outcome


@CI_SIZED
@given(request=requests())
def test_the_ingest_answers_202_401_or_413_and_accepted_deliveries_end_well(
    ingest: tuple[FlaskClient, Settings], request: Request
) -> None:
    client, settings = ingest
    response = client.post("/webhooks/genstore", **request.kwargs())
    assert response.status_code < 500
    # a body shorter than its Content-Length means the client went away: 400, nothing kept
    assert response.status_code == request.expected
    found = take_queued(settings)
    assert len(found) == (response.status_code == ACCEPTED)
    for raw in found:
        assert raw.body == request.received
        assert response.get_json()["delivery_id"] == raw.delivery_id
        assert_ends_well(settings, raw)


@CI_SIZED
@given(body=bodies(), headers=st.lists(
    st.tuples(st.sampled_from(["X-Genstore-Topic", "X-Genstore-Shop-Domain",
                               "X-Genstore-Webhook-Id", "X-Genstore-Triggered-At"]),
              st.text(st.characters(exclude_categories=[]), max_size=40)
              .map(lambda text: text.encode("utf-8", "surrogatepass").decode("latin-1"))),
    max_size=4))
def test_parser_and_core_never_raise_on_either_database(
    db_url: str, body: bytes, headers: list[tuple[str, str]]
) -> None:
    settings = make_settings(db_url)
    sent = {"x-genstore-topic": "refunds/create"} | {name.lower(): value
                                                     for name, value in headers}
    raw = RawDelivery.from_request(body, sent, datetime.now(UTC))
    assert_ends_well(settings, raw)


@pytest.mark.parametrize("body", RAW_BODIES, ids=lambda body: repr(body[:24]))
def test_each_known_hostile_body_is_accepted_and_dead_lettered_or_applied(
    ingest: tuple[FlaskClient, Settings], body: bytes
) -> None:
    client, settings = ingest
    response = client.post("/webhooks/genstore", data=body, headers=genstore_headers(body, SECRET))
    assert response.status_code == ACCEPTED
    [raw] = take_queued(settings)
    assert assert_ends_well(settings, raw) in (Outcome.DEAD_LETTERED, Outcome.APPLIED)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("note", "a\x00b", "invalid_payload"),
        ("id", 10**4000, "invalid_payload"),
        ("refundPrice", 1e300, "invalid_payload"),
        ("refundPrice", "1" * 19, "invalid_payload"),
        ("updateTime", "9999-12-31T23:59:59-14:00", "invalid_payload"),
        ("status", "\u202erefunded", "unknown_status"),
        ("lineItems", {"not": "a list"}, "invalid_payload"),
        ("customer", [1, 2, 3], "invalid_payload"),
    ],
)
def test_wrong_values_are_dead_lettered_with_their_reason(
    db_url: str, field: str, value: Any, reason: str
) -> None:
    import json

    settings = make_settings(db_url)
    body = json.dumps({"refund": {"id": "1", field: value}}).encode()
    raw = RawDelivery.from_request(body, {"x-genstore-topic": "refunds/create"},
                                   datetime.now(UTC))
    assert assert_ends_well(settings, raw) is Outcome.DEAD_LETTERED
    with session_factory(settings)() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.reason == reason


def test_nul_in_headers_is_stored_not_fatal_on_postgresql(
    pg_url: str, redis_url: str, key_prefix: str
) -> None:
    # gunicorn refuses NUL in a header; other servers pass it on, and PostgreSQL text cannot
    # hold it: the delivery could be neither applied nor dead-lettered.
    settings = make_settings(pg_url, redis_url, key_prefix)
    client = create_app(settings).test_client()
    body = b'{"refund": {"id": "1"}}'
    for name in ("X-Genstore-Topic", "X-Genstore-Shop-Domain", "X-Genstore-Webhook-Id"):
        headers = genstore_headers(body, SECRET) | {name: "refunds/x\x00y"}
        assert client.post("/webhooks/genstore", data=body, headers=headers).status_code == 202
    for raw in take_queued(settings):
        assert "\x00" not in raw.delivery_id + (raw.topic or "") + raw.shop
        assert_ends_well(settings, raw)
