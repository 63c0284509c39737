"""Raw-body retention on SQLite and PostgreSQL: the bodies of applied deliveries past the
retention are dropped, their metadata kept; bodies that have not had their effect, and open
dead letters, stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deliveries import apply, delivery, view
from payloads import camel_event
from sqlalchemy import select, update

from refunds import retention
from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import DeadLetter, RawDeliveryRecord
from refunds.settings import Settings

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=31)


def archived(settings: Settings) -> dict[str, RawDeliveryRecord]:
    with session_factory(settings)() as session:
        return {row.delivery_id: row for row in session.scalars(select(RawDeliveryRecord))}


def drop(settings: Settings, days: int = 30) -> retention.Dropped:
    with session_factory(settings).begin() as session:
        return retention.drop_page(session=session, days=days, now=NOW)


def test_applied_bodies_past_the_retention_are_dropped_and_their_metadata_kept(
    settings: Settings,
) -> None:
    old = delivery(camel_event("7001", price="25.00"), delivery_id="old", received_at=OLD)
    recent = delivery(camel_event("7002"), delivery_id="recent", received_at=NOW)
    dead = delivery(camel_event("7003", status="exploded"), delivery_id="dead", received_at=OLD)
    for raw in (old, recent, dead):
        apply(settings, raw)
    before = view(settings, "7001")

    dropped = drop(settings)

    assert dropped == retention.Dropped(raw_deliveries=1, dead_letters=0)
    rows = archived(settings)
    assert rows["old"].body == b""
    assert rows["old"].body_sha256 == old.body_sha256
    assert rows["old"].headers == {"x-genstore-topic": "refunds/create",
                                   retention.DROPPED_HEADER: NOW.isoformat()}
    assert (rows["recent"].body, rows["dead"].body) == (recent.body, dead.body)
    assert view(settings, "7001") == before
    assert apply(settings, old) is Outcome.DUPLICATE_DELIVERY
    assert drop(settings) == retention.Dropped()


def test_a_dead_letter_keeps_its_body_until_resolved_longer_ago_than_the_retention(
    settings: Settings,
) -> None:
    raw = delivery(camel_event("7001", status="exploded"), delivery_id="d", received_at=OLD)
    apply(settings, raw)
    with session_factory(settings).begin() as session:
        session.execute(update(DeadLetter).values(state="resolved", resolved_at=NOW))

    assert drop(settings) == retention.Dropped()

    with session_factory(settings).begin() as session:
        session.execute(update(DeadLetter).values(resolved_at=OLD))
    assert drop(settings) == retention.Dropped(raw_deliveries=0, dead_letters=1)
    with session_factory(settings)() as session:
        letter = session.scalars(select(DeadLetter)).one()
    assert letter.body == b"" and retention.DROPPED_HEADER in letter.headers
    assert archived(settings)["d"].body == raw.body  # never applied: kept
