"""Migrations: the models and the migrated schema agree, and a database holding data written
by the previous schema (0001) upgrades without changing a refund, so messages resent after the
upgrade are duplicates, under their old delivery ids and under new ones alike."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from backing_services import scratch_database
from deliveries import view
from payloads import camel_event, to_body
from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    func,
    select,
    text,
)

from refund_sink.operations import upgrade_database
from refunds.apply import Outcome, apply_deliveries
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import (
    Base,
    DeliveryClaim,
    MessageRecord,
    RawDeliveryRecord,
    Refund,
    RefundEvent,
)
from refunds.settings import Settings
from schemas import PayloadRejected, parse_delivery

# Rows written by the schema-0001 code (commit 53e25fa) applying these deliveries.
FIXTURE = json.loads((Path(__file__).parent.parent / "fixtures" / "schema_0001.json")
                     .read_text(encoding="utf-8"))
TABLES = ("refund_messages", "refunds", "deliveries", "raw_deliveries", "dead_letters")
TIED = ("shop-a.example", "7004")  # two fund changes at the same time
V2_TWINS = ("shop-b.example", "8005")  # two messages differing only in contact details
REFUNDS = [("shop-a.example", "7001"), ("shop-a.example", "7002"), ("shop-a.example", "7003"),
           TIED, ("shop-b.example", "10220473645"), ("shop-b.example", "8001"), V2_TWINS]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'upgrade.db'}"
        return
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    with scratch_database(admin_url) as url:
        yield url


def test_models_and_migrations_agree(empty_url: str) -> None:
    settings = Settings(database_url=empty_url)
    upgrade_database(settings)
    with session_factory(settings)() as session:
        context = MigrationContext.configure(session.connection())
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_from_0001_keeps_every_refund_and_resends_are_duplicates(
    empty_url: str, tmp_path: Path
) -> None:
    # given a database at 0001 holding what the previous code wrote
    settings = Settings(database_url=empty_url)
    upgrade_database(settings, "0001")
    _load_0001_rows(settings)
    # when it is upgraded
    upgrade_database(settings)
    upgraded = _views(settings)
    # then every stored message carries the fingerprint the new code gives it, but for the
    # one whose new fingerprint matched an earlier message's: it stays distinct, as recorded
    with session_factory(settings)() as session:
        stored = {(m.shop, m.refund_id, m.fingerprint, m.fingerprint_version)
                  for m in session.scalars(select(MessageRecord))}
    new = {(m.shop, m.refund_id, m.fingerprint, 2) for m in _parsed_fixture()}
    assert stored - new == {(*V2_TWINS, _v1_fingerprint_of_the_later_twin(), 1)}
    assert upgraded[V2_TWINS]["events_applied"] == 2
    # and every other refund is what the new code makes of the same deliveries (the tied
    # fund changes of 7004 recomputed in the order the code now uses)
    fresh = Settings(database_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    upgrade_database(fresh)
    _apply(fresh, _fixture_deliveries())
    expected = _views(fresh)
    del upgraded[V2_TWINS], expected[V2_TWINS]
    assert _as_0001_stored(upgraded) == _as_0001_stored(expected)  # refunded_at included
    # and the after-sale reasons (0004) are those the fold gives, and each claim is an event
    assert _reasons(settings) == _reasons(fresh) and any(_reasons(fresh).values())
    with session_factory(settings)() as session:
        claims = {(c.shop, c.delivery_id, c.outcome)
                  for c in session.scalars(select(DeliveryClaim))}
        events = [(e.shop, e.delivery_id, e.effect) for e in session.scalars(select(RefundEvent))]
    assert sorted(events) == sorted(claims) and {e.origin for e in _events(settings)} == {
        "webhook"}
    # and every delivery resent, under its old identity and under a new delivery id, is a
    # duplicate that changes no refund
    before = _views(settings)
    results = _apply(settings, [*_fixture_deliveries(), *_fixture_deliveries(new_ids=True)])
    assert Outcome.APPLIED not in {result.outcome for result in results}
    assert _views(settings) == before
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(MessageRecord)) == len(stored)
        archived = session.scalar(select(func.count()).select_from(RawDeliveryRecord))
    digest_ids = sum("x-genstore-webhook-id" not in sent["headers"]
                     for sent in FIXTURE["deliveries"])
    # each resend archived once, those without a webhook id under their new digest id
    assert archived == len(FIXTURE["deliveries"]) * 2 + digest_ids
    # and a later message of the tied refund gives what the new code gives
    later = RawDelivery.from_request(to_body(camel_event(
        refund_id="7004", status="refunded", price="19.00", update_time="2025-03-05T10:00:00Z")),
        {"x-genstore-topic": "refunds/create", "x-genstore-shop-domain": "shop-a.example"},
        datetime(2026, 11, 21, tzinfo=UTC))
    _apply(settings, [later])
    _apply(fresh, [later])
    assert _views(settings)[TIED] == _views(fresh)[TIED]


def _apply(settings: Settings, deliveries: list[RawDelivery]) -> list[Any]:
    with session_factory(settings).begin() as session:
        return apply_deliveries(deliveries, session=session, naive_tz="UTC")


# The line-item keys the 0001 code stored. Rows recorded before issue 12 keep them as they
# were, the ordered quantity standing in for a blank refunded one; newer fields are absent.
LINE_ITEM_KEYS_0001 = ("line_item_id", "product_id", "variant_id", "sku", "quantity", "price",
                       "subtotal", "total_tax", "location_id")


def _as_0001_stored(views: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    def line(item: dict[str, Any]) -> dict[str, Any]:
        kept = {key: item.get(key) for key in LINE_ITEM_KEYS_0001}
        if kept["quantity"] is None:
            kept["quantity"] = item.get("ordered_quantity")
        return kept

    return {key: {**view, "line_items": None if view["line_items"] is None
                  else [line(item) for item in view["line_items"]]}
            for key, view in views.items()}


def _reasons(settings: Settings) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    with session_factory(settings)() as session:
        return {(r.shop, r.refund_id): (r.rights_reason_type, r.rights_reason)
                for r in session.scalars(select(Refund))}


def _events(settings: Settings) -> list[RefundEvent]:
    with session_factory(settings)() as session:
        return list(session.scalars(select(RefundEvent)))


def _views(settings: Settings) -> dict[tuple[str, str], dict[str, object]]:
    return {key: view(settings, key[1], shop=key[0]) for key in REFUNDS}


def _v1_fingerprint_of_the_later_twin() -> str:
    [row] = [row for row in FIXTURE["tables"]["refund_messages"]
             if (row["shop"], row["refund_id"]) == V2_TWINS and row["delivery_id"] == "wh-13"]
    return str(row["fingerprint"])


def _load_0001_rows(settings: Settings) -> None:
    with session_factory(settings).begin() as session:
        connection = session.connection()
        for name in TABLES:
            table = Table(name, MetaData(), autoload_with=connection)
            rows = [{column: _stored(value, table.c[column].type, connection.dialect.name)
                     for column, value in row.items()} for row in FIXTURE["tables"][name]]
            connection.execute(table.insert(), rows)
        if connection.dialect.name == "postgresql":  # ids were given explicitly
            for name in ("refund_messages", "dead_letters"):
                connection.execute(text(f"SELECT setval('{name}_id_seq', "
                                        f"(SELECT max(id) FROM {name}))"))


def _stored(value: Any, column_type: Any, dialect: str) -> Any:
    """A value as the old code's SQLite database returned it, for a column of this type."""
    if value is None:
        return None
    if isinstance(column_type, LargeBinary):
        return base64.b64decode(value["base64"])
    if isinstance(column_type, JSON):
        return json.loads(value)
    if isinstance(column_type, DateTime):
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if dialect == "postgresql" else moment
    if isinstance(column_type, Integer):
        return int(value)
    if isinstance(column_type, Numeric) and dialect == "postgresql":
        return Decimal(value)
    return value


def _fixture_deliveries(new_ids: bool = False) -> list[RawDelivery]:
    made = []
    for sent in FIXTURE["deliveries"]:
        headers = dict(sent["headers"])
        if new_ids:
            headers["x-genstore-webhook-id"] = f"resent-{uuid.uuid4().hex}"
        made.append(RawDelivery.from_request(base64.b64decode(sent["body"]), headers,
                                             datetime.fromisoformat(sent["received_at"])))
    return made


def _parsed_fixture() -> list[Any]:
    parsed = []
    for raw in _fixture_deliveries():
        try:
            parsed.append(parse_delivery(raw.body, topic=raw.topic, shop=raw.shop,
                                         triggered_at=raw.triggered_at,
                                         received_at=raw.received_at))
        except PayloadRejected:
            continue  # the two dead letters
    return parsed
