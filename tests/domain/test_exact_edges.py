"""Issue 10's findings, each as it was found: no silent drop and no double count at the edges
(a delivery is (shop, delivery id); fingerprints do not move; another body under a known
delivery id is a conflict, kept; every accepted delivery is archived)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import pytest
from deliveries import apply, delivery, view
from payloads import camel_event, spec_sequence, to_body
from sqlalchemy import func, select

from refunds import dead_letters, metrics, queries
from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord, RawDeliveryRecord
from refunds.settings import Settings
from worker.handling import DeliveryHandler

RECEIVED = datetime(2025, 3, 1, 12, tzinfo=UTC)


def from_shop(shop: str, body: bytes, webhook_id: str | None = None) -> RawDelivery:
    headers = {"x-genstore-topic": "refunds/create", "x-genstore-shop-domain": shop}
    if webhook_id:
        headers["x-genstore-webhook-id"] = webhook_id
    return RawDelivery.from_request(body, headers, RECEIVED)


def count(settings: Settings, model: type) -> int:
    with session_factory(settings)() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_finding_1_same_body_from_a_second_shop_is_stored(settings: Settings) -> None:
    # given one body, without a webhook id, sent by two shops
    body = to_body(camel_event(status="in_progress", price="25.00"))
    first, second = from_shop("shop-a.example", body), from_shop("shop-b.example", body)
    # when both are applied
    outcomes = [apply(settings, first), apply(settings, second)]
    # then each shop has its refund, and each delivery its own claim and archive row
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED]
    assert first.delivery_id != second.delivery_id
    assert view(settings, "7001", shop="shop-a.example")["refund_price"] == "25.00"
    assert view(settings, "7001", shop="shop-b.example")["refund_price"] == "25.00"
    assert count(settings, DeliveryClaim) == 2
    assert count(settings, RawDeliveryRecord) == 2


def test_finding_1_same_webhook_id_from_two_shops_is_two_deliveries(settings: Settings) -> None:
    body_a = to_body(camel_event(refund_id="81", price="1.00"))
    body_b = to_body(camel_event(refund_id="82", price="2.00"))
    assert apply(settings, from_shop("shop-a.example", body_a, "wh-1")) is Outcome.APPLIED
    assert apply(settings, from_shop("shop-b.example", body_b, "wh-1")) is Outcome.APPLIED
    assert view(settings, "82", shop="shop-b.example")["refund_price"] == "2.00"
    # and a resend of either is still a duplicate of its own shop's delivery
    resend = from_shop("shop-b.example", body_b, "wh-1")
    assert apply(settings, resend) is Outcome.DUPLICATE_DELIVERY


def test_finding_1_dead_letters_are_per_shop(settings: Settings) -> None:
    broken = b'{"refund": {"id": "1",'
    apply(settings, from_shop("shop-a.example", broken, "wh-9"))
    apply(settings, from_shop("shop-b.example", broken, "wh-9"))
    with session_factory(settings)() as session:
        rows = session.execute(select(DeadLetter.shop, DeadLetter.delivery_id,
                                      DeadLetter.attempts)).all()
    assert sorted(rows) == [("shop-a.example", "wh-9", 1), ("shop-b.example", "wh-9", 1)]


def test_finding_2_message_resent_under_a_new_delivery_id_is_not_recorded_twice(
    settings: Settings,
) -> None:
    # given the SPEC's sequence applied once
    for payload in spec_sequence():
        apply(settings, delivery(payload))
    before = view(settings, "7001")
    # when Genstore resends every message under new delivery ids, with its naive zone changed
    # (the messages carry offsets)
    other_zone = dataclasses.replace(settings, naive_tz="America/New_York")
    outcomes = [apply(other_zone, delivery(payload)) for payload in spec_sequence()]
    # then nothing moves: three duplicates, one fund change, three events
    assert outcomes == [Outcome.DUPLICATE_MESSAGE] * 3
    assert view(settings, "7001") == before
    assert before["events_applied"] == 3 and len(before["fund_changes"]) == 1  # type: ignore[arg-type]
    with session_factory(settings)() as session:
        versions = set(session.scalars(select(MessageRecord.fingerprint_version)))
    assert versions == {2}


def test_finding_3_changed_body_under_a_known_delivery_id_is_a_conflict_kept(
    settings: Settings,
) -> None:
    # given a delivery applied
    first = delivery(camel_event(status="in_progress", price="25.00"), delivery_id="wh-7")
    assert apply(settings, first) is Outcome.APPLIED
    # when another body arrives under the same (shop, delivery id)
    changed = delivery(camel_event(status="refunded", price="24.00"), delivery_id="wh-7")
    outcome = apply(settings, changed)
    # then it is not applied and not dropped: a dead letter keeping the new body, naming
    # both digests, and both bodies are in the archive
    assert outcome is Outcome.DEAD_LETTERED
    assert view(settings, "7001")["status"] == "in_progress"
    with session_factory(settings)() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
        archived = sorted(session.scalars(select(RawDeliveryRecord.body_sha256)))
    assert (letter.reason, letter.state, letter.body) == ("delivery_conflict", "dead",
                                                          changed.body)
    assert first.body_sha256 in letter.error and changed.body_sha256 in letter.error
    assert letter.delivery_id.startswith("wh-7~")
    assert archived == sorted([first.body_sha256, changed.body_sha256])  # each body once
    # and the same conflict again updates that dead letter instead of adding one
    assert apply(settings, changed) is Outcome.DEAD_LETTERED
    assert count(settings, DeadLetter) == 1


def test_finding_3_requeued_conflict_applies_as_a_delivery_of_its_own(settings: Settings) -> None:
    apply(settings, delivery(camel_event(status="in_progress", price="25.00"), delivery_id="d"))
    apply(settings, delivery(camel_event(status="refunded", price="24.00"), delivery_id="d"))
    factory = session_factory(settings)
    with factory() as session:
        [letter_id] = session.scalars(select(DeadLetter.id)).all()
    # when the conflict is requeued twice before either requeue is applied
    sent: list[RawDelivery] = []
    for _ in range(2):
        dead_letters.requeue(factory, sent.append, ids=[letter_id])
    for raw in sent:
        apply(settings, raw)
    # then it was applied once, under its own delivery id, and its letter is resolved
    state = view(settings, "7001")
    assert (state["status"], state["refund_price"], state["events_applied"]) == (
        "refunded", "24.00", 2)
    assert len(sent) == 2 and {raw.delivery_id for raw in sent} == {sent[0].delivery_id}
    assert sent[0].delivery_id != "d"
    with session_factory(settings)() as session:
        [letter] = session.scalars(select(DeadLetter)).all()
    assert letter.state == "resolved"


def test_a_conflict_is_counted_and_logged(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    handler = DeliveryHandler(settings)
    handler.handle([delivery(camel_event(price="1.00"), delivery_id="c")])
    before = metrics.DEAD_LETTERED.labels("delivery_conflict")._value.get()
    with caplog.at_level(logging.INFO, logger="refund_sink.worker"):
        [result] = handler.handle([delivery(camel_event(price="2.00"), delivery_id="c")])
    assert result.reason == "delivery_conflict"
    assert metrics.DEAD_LETTERED.labels("delivery_conflict")._value.get() == before + 1
    assert [(r.levelno, r.getMessage().split(" delivery_id")[0]) for r in caplog.records] == [
        (logging.WARNING, "delivery conflict"),
        (logging.INFO, "deliveries applied deliveries=1 applied=0 duplicates=0 dead_lettered=1")]


def test_a_failed_body_stays_dead_when_another_body_under_its_id_applies(
    settings: Settings,
) -> None:
    # given body 1 under a delivery id dead-lettered after its retries
    handler = DeliveryHandler(settings)
    first = delivery(camel_event(refund_id="31", price="1.00"), delivery_id="k")
    handler.on_worker_lost(first, lost=3)
    # when body 2 under the same delivery id applies
    assert apply(settings, delivery(camel_event(refund_id="32"), delivery_id="k")) is (
        Outcome.APPLIED)
    # then body 1's letter stays open to requeue (its refund does not exist yet), and a later
    # failure of body 1 is a conflict, kept apart
    handler.on_worker_lost(first, lost=3)
    with session_factory(settings)() as session:
        letters = {(letter.delivery_id, letter.reason, letter.state)
                   for letter in session.scalars(select(DeadLetter))}
    conflict_id = dead_letters.conflicting(first).delivery_id
    assert letters == {("k", "worker_lost", "dead"),
                       (conflict_id, "delivery_conflict", "dead")}


def test_the_sweeper_does_not_count_a_conflicting_copy_as_settled(settings: Settings) -> None:
    applied = delivery(camel_event(price="1.00"), delivery_id="s")
    other = delivery(camel_event(price="2.00"), delivery_id="s")
    apply(settings, applied)
    published = datetime.now(UTC) - timedelta(seconds=1)
    with session_factory(settings)() as session:
        settled = queries.settled_copies({"m1": (applied, published), "m2": (other, published)},
                                         session=session)
    assert settled == {"m1"}  # m2 may still become its conflict: it is not dropped
    apply(settings, other)
    with session_factory(settings)() as session:
        assert queries.settled_copies({"m2": (other, published)}, session=session) == {"m2"}


def test_every_accepted_delivery_is_archived_whatever_its_fate(settings: Settings) -> None:
    handler = DeliveryHandler(settings)
    applied = delivery(camel_event(price="1.00"))
    fates = [applied, applied, delivery(applied.body), delivery(b"not json")]
    for raw in fates:
        apply(settings, raw)
    exhausted = delivery(camel_event(refund_id="2"))
    handler.on_failure(exhausted, ConnectionError("database away"), attempt=99)
    lost = delivery(camel_event(refund_id="3"))
    handler.on_worker_lost(lost, lost=3)
    with session_factory(settings)() as session:
        archived = set(session.scalars(select(RawDeliveryRecord.delivery_id)))
        reasons = set(session.scalars(select(DeadLetter.reason)))
    assert archived == {raw.delivery_id for raw in [*fates, exhausted, lost]}
    assert reasons == {"invalid_json", "retries_exhausted", "worker_lost"}
