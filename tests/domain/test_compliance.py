"""The compliance topics through the worker's apply path, on SQLite and PostgreSQL:
`customers/redact` erases a customer's contact details from every stored byte (tables and
spool) and changes no figure; `shop/redact` leaves nothing of the shop; a redelivery is a
duplicate; `customers/data_request` is logged with the export command; a malformed request is
a dead letter."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from deliveries import delivery, view
from payloads import camel_event, to_body
from sqlalchemy import func, insert, select

from broker.spool import Spool
from broker.wire import from_wire
from refunds import report_params, reports
from refunds.apply import Outcome, Result
from refunds.db import session_factory
from refunds.models import (
    ApiToken,
    Base,
    DeadLetter,
    DeliveryClaim,
    Erasure,
    RawDeliveryRecord,
    Refund,
    RefundEvent,
    Shop,
)
from refunds.settings import Settings
from worker.handling import DeliveryHandler

ADA = {"id": "4242", "firstName": "Adelheid", "lastName": "Quenbyworth",
       "email": "adelheid.q@example.org", "phone": "+15550001111",
       "addresses": "12 Analytical Way", "defaultAddress": "12 Analytical Way",
       "currency": "USD", "tags": "vip"}
ADA_DETAILS = ("Adelheid", "Quenbyworth", "adelheid.q@example.org", "+15550001111",
               "Analytical Way")
BOB = {"id": "77", "firstName": "Bartholomew", "email": "bart@example.org", "phone": "+15559990000"}


def redact(customer: dict[str, Any], shop: str = "default", **extra: Any) -> bytes:
    return to_body({"shop_id": 1, "shop_domain": shop, "customer": customer,
                    "orders_to_redact": [9001], **extra})


def handle(settings: Settings, *raws: Any) -> list[Result]:
    """As the worker applies them: one transaction, the host's spool in reach."""
    return DeliveryHandler(settings).handle(list(raws))


def stored_text(settings: Settings) -> str:
    """Every text, JSON and bytes value of every table, and every spool file (its delivery's
    body decoded), as one string to search."""
    parts: list[str] = []
    with session_factory(settings)() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                parts.extend(_text(value) for value in row)
    for path in Path(settings.spool_dir).rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            parts.append(raw.decode("utf-8", errors="replace"))
            wire = from_wire(json.loads(raw))
            parts.append(wire.body.decode("utf-8", errors="replace"))
            parts.append(json.dumps(dict(wire.headers), ensure_ascii=False))
    return "\n".join(parts)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def finance(settings: Settings) -> reports.FinanceReport:
    with session_factory(settings)() as session:
        return reports.finance_report(report_params.interval("2025-03-01", "2025-03-02", None),
                                      session=session)


def erasures(settings: Settings) -> list[Erasure]:
    with session_factory(settings)() as session:
        return list(session.scalars(select(Erasure).order_by(Erasure.id)))


def test_customers_redact_erases_contact_details_everywhere_and_keeps_every_figure(
    settings: Settings,
) -> None:
    # given: Ada's refunds (two messages on one, a note quoting her e-mail), Bob's refund, a
    # dead letter of Ada's, and spool files holding her details (pending and quarantined)
    handle(settings,
           delivery(camel_event("7001", status="in_progress", price="25.00", customer=ADA,
                                sku="128G;白色;")),
           delivery(camel_event("7001", status="refunded", price="20.00", customer=ADA,
                                update_time="2025-03-01T11:00:00Z")),
           delivery(camel_event("7002", customerId="4242", price="5.00",
                                customer={**ADA, "id": None}, note="call +15550001111")),
           delivery(camel_event("7003", price="9.00", customer=BOB)))
    handle(settings, delivery(camel_event("7004", status="exploded", customer=ADA)))
    spool = Spool(settings.spool_dir)
    spool.put(delivery(camel_event("7005", customer=ADA)))
    spool.put(delivery(camel_event("7006", customer=ADA), shop="other.genmystore.com"))
    spool.put(delivery(camel_event("7007", customer=ADA)))
    quarantined = sorted(spool.pending.iterdir())[-1]
    spool.quarantine.mkdir(parents=True)
    quarantined.rename(spool.quarantine / quarantined.name)
    before = {refund_id: view(settings, refund_id) for refund_id in ("7001", "7002", "7003")}
    report = finance(settings)
    assert all(detail in stored_text(settings) for detail in ADA_DETAILS)

    # when
    request = delivery(redact({"id": 4242, "email": "ADELHEID.Q@example.org",
                               "phone": "+15550001111"}), topic="customers/redact")
    [result] = handle(settings, request)

    # then: none of her details anywhere but in the other shop's spool file
    assert result.outcome is Outcome.APPLIED
    text = stored_text(settings)
    ours = text.replace(_other_shop_file(spool), "")
    assert [detail for detail in ADA_DETAILS if detail.lower() in ours.lower()] == []
    assert "Bartholomew" in text and "bart@example.org" in text
    before["7002"]["note"] = "call [erased]"  # the one free text a refund keeps
    assert {refund_id: view(settings, refund_id) for refund_id in before} == before
    assert finance(settings) == report
    [erasure] = erasures(settings)
    assert (erasure.topic, erasure.shop, erasure.customer_id, erasure.delivery_id) == (
        "customers/redact", "default", "4242", request.delivery_id)
    assert erasure.rows == {"raw_deliveries": 5, "refund_messages": 3, "refunds": 1,
                            "dead_letters": 1}
    # the archive keeps each body's identity and its ids and amounts
    with session_factory(settings)() as session:
        archived = {row.delivery_id: row for row in session.scalars(select(RawDeliveryRecord))}
        letter = session.scalars(select(DeadLetter)).one()
    kept = json.loads(archived[request.delivery_id].body)
    assert kept["customer"] == {"id": 4242}
    assert len({row.body_sha256 for row in archived.values()}) == len(archived)
    assert json.loads(letter.body)["refund"]["customer"] == {"id": "4242", "currency": "USD"}
    assert letter.body_sha256 != archived[letter.delivery_id].body_sha256
    assert "Adelheid" not in str(erasure.rows)


def _other_shop_file(spool: Spool) -> str:
    for _, path in spool.files():
        wire = from_wire(json.loads(path.read_bytes()))
        if wire.shop == "other.genmystore.com":
            return path.read_bytes().decode() + "\n" + wire.body.decode()
    raise AssertionError("the other shop's spool file is gone")


def test_a_redelivered_redact_is_a_duplicate_not_a_second_erasure(settings: Settings) -> None:
    handle(settings, delivery(camel_event("7001", customer=ADA)))
    request = delivery(redact({"id": "4242"}), topic="customers/redact")

    first, again = handle(settings, request), handle(settings, request)

    assert [first[0].outcome, again[0].outcome] == [Outcome.APPLIED, Outcome.DUPLICATE_DELIVERY]
    assert len(erasures(settings)) == 1
    with session_factory(settings)() as session:
        claim = session.get(DeliveryClaim, request.key)
    assert claim is not None and claim.topic == "customers/redact"


def test_a_customer_named_by_e_mail_only_is_erased(settings: Settings) -> None:
    handle(settings, delivery(camel_event("7001", customer={**ADA, "id": None})))

    handle(settings, delivery(redact({"email": "adelheid.q@example.org"}),
                              topic="customers/redact"))

    assert "Quenbyworth" not in stored_text(settings)
    assert erasures(settings)[0].customer_id is None


def test_a_redact_after_the_refund_in_the_same_list_erases_it(settings: Settings) -> None:
    handle(settings, delivery(camel_event("7001", customer=ADA)),
           delivery(redact({"id": "4242"}), topic="customers/redact"))

    assert "Quenbyworth" not in stored_text(settings)


def test_shop_redact_leaves_nothing_of_the_shop_and_the_other_shop_untouched(
    settings: Settings,
) -> None:
    gone, kept = "gone.genmystore.com", "kept.genmystore.com"
    for shop in (gone, kept):
        handle(settings, delivery(camel_event("7001", customer=ADA), shop=shop),
               delivery(camel_event("7002", price="900.00"), shop=shop))
        handle(settings, delivery(camel_event("7003", status="exploded"), shop=shop))
        Spool(settings.spool_dir).put(delivery(camel_event("7004"), shop=shop))
    now = datetime.now(UTC)
    with session_factory(settings).begin() as session:
        for shop in (gone, kept):
            session.execute(insert(Shop).values(domain=shop, access_token_encrypted=b"sealed",
                                                added_at=now))
            session.execute(insert(ApiToken).values(token_hash=shop, scopes="read_refunds",
                                                    shop=shop, created_at=now))
    kept_before = _rows_of(settings, kept)
    request = delivery(to_body({"shop_id": 5, "shop_domain": gone}), topic="shop/redact",
                       shop=gone)

    [result] = handle(settings, request)

    assert result.outcome is Outcome.APPLIED
    left = {table: count for table, count in _rows_of(settings, gone).items() if count}
    # the request itself stays known (a redelivery is a duplicate), and the erasure recorded
    assert left == {"deliveries": 1, "raw_deliveries": 1, "erasures": 1}
    assert _rows_of(settings, kept) == kept_before
    assert [wire.shop for wire in _spooled(settings)] == [kept]
    [erasure] = erasures(settings)
    assert erasure.rows["refunds"] == 2 and erasure.rows["shops"] == 1
    assert erasure.rows["api_tokens"] == 1 and "spool_files" not in erasure.rows  # after commit
    assert handle(settings, request)[0].outcome is Outcome.DUPLICATE_DELIVERY


def _rows_of(settings: Settings, shop: str) -> dict[str, int]:
    counts = {}
    with session_factory(settings)() as session:
        for table in Base.metadata.sorted_tables:
            column = table.c.get("shop", table.c.get("domain"))
            if column is not None:
                counts[table.name] = session.scalar(
                    select(func.count()).select_from(table).where(column == shop)) or 0
    return counts


def _spooled(settings: Settings) -> list[Any]:
    return [from_wire(json.loads(path.read_bytes()))
            for _, path in Spool(settings.spool_dir).files()]


def test_a_data_request_is_logged_with_the_export_command_and_changes_nothing(
    settings: Settings, caplog: pytest.LogCaptureFixture,
) -> None:
    handle(settings, delivery(camel_event("7001", customer=ADA)))
    request = delivery(to_body({"shop_id": 1, "shop_domain": "default", "customer": ADA,
                                "orders_requested": [9001], "data_request": {"id": 9999}}),
                       topic="customers/data_request")

    with caplog.at_level(logging.INFO, logger="refund_sink"):
        [result] = handle(settings, request)

    assert result.outcome is Outcome.APPLIED
    [record] = [r for r in caplog.records if r.getMessage().startswith("customer data request")]
    assert record.__dict__["command"] == (
        "refund-sink export customer --shop default --customer 4242")
    assert record.__dict__["data_request_id"] == "9999"
    assert "adelheid" not in caplog.text.lower()
    assert erasures(settings) == []
    assert "Quenbyworth" in stored_text(settings)


@pytest.mark.parametrize(("topic", "body", "reason"), [
    ("customers/redact", to_body({"shop_domain": "default", "customer": {}}), "invalid_payload"),
    ("customers/redact", to_body({"shop_domain": "default"}), "invalid_payload"),
    ("customers/data_request", to_body({"customer": {"id": [1]}}), "invalid_payload"),
    ("shop/redact", b"not json", "invalid_json"),
    ("shop/redact", to_body({"shop_id": {"nested": 1}}), "invalid_payload"),
])
def test_a_malformed_compliance_request_is_a_dead_letter(
    settings: Settings, topic: str, body: bytes, reason: str,
) -> None:
    handle(settings, delivery(camel_event("7001", customer=ADA)))

    [result] = handle(settings, delivery(body, topic=topic))

    assert (result.outcome, result.reason) == (Outcome.DEAD_LETTERED, reason)
    with session_factory(settings)() as session:
        assert session.scalars(select(DeadLetter.topic)).all() == [topic]
    assert erasures(settings) == []
    assert "Quenbyworth" in stored_text(settings)


def _register(settings: Settings, *domains: str) -> None:
    now = datetime.now(UTC)
    with session_factory(settings).begin() as session:
        for domain in domains:
            session.execute(insert(Shop).values(domain=domain, access_token_encrypted=b"sealed",
                                                added_at=now))


def _shop_redact(shop: str) -> Any:
    return delivery(to_body({"shop_id": 1, "shop_domain": shop}), topic="shop/redact",
                    shop=shop)


def test_a_list_after_a_shop_redact_is_what_one_by_one_gives(settings: Settings) -> None:
    # given two registered shops
    gone, kept = "gone.genmystore.com", "kept.genmystore.com"
    _register(settings, gone, kept)
    # when a shop/redact and, after it in the same list, a refund of that shop arrive
    later = delivery(camel_event("7001"), shop=gone)
    results = handle(settings, _shop_redact(gone), later)
    # then, as one by one: the redact applies, the later refund is of an unregistered shop
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.APPLIED, None), (Outcome.DEAD_LETTERED, "unknown_shop")]
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0
        # and the later delivery is archived, as every accepted delivery is
        archived = set(session.scalars(select(RawDeliveryRecord.delivery_id)))
    assert later.delivery_id in archived


def test_a_shop_update_after_its_shop_redact_in_one_list_does_not_fail_the_list(
    settings: Settings,
) -> None:
    gone, kept = "gone.genmystore.com", "kept.genmystore.com"
    _register(settings, gone, kept)
    update = delivery(to_body({"shop": {"ianaTimezone": "Asia/Shanghai", "currency": "CNY"}}),
                      topic="shop/update", shop=gone)
    other = delivery(camel_event("7001"), shop=kept)
    results = handle(settings, _shop_redact(gone), update, other)
    assert [(r.outcome, r.reason) for r in results] == [
        (Outcome.APPLIED, None), (Outcome.DEAD_LETTERED, "unknown_shop"),
        (Outcome.APPLIED, None)]


def test_a_refund_delivery_under_a_compliance_key_is_no_refunds_event(
    settings: Settings,
) -> None:
    request = delivery(redact(ADA), topic="customers/redact", delivery_id="d-1")
    handle(settings, request)
    # the same (shop, delivery id) and body again, under a refunds topic
    again = delivery(request.body, topic="refunds/create", delivery_id="d-1")
    [result] = handle(settings, again)
    assert result.outcome is Outcome.DUPLICATE_DELIVERY and result.refund_id is None
    with session_factory(settings)() as session:
        assert session.scalar(select(func.count()).select_from(RefundEvent)) == 0


def test_a_spool_file_that_cannot_be_rewritten_stays_as_it_was(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a spooled delivery of Ada's, and a disk that refuses the erased copy
    Spool(settings.spool_dir).put(delivery(camel_event("7005", customer=ADA)))
    before = {path.name: path.read_bytes() for _, path in Spool(settings.spool_dir).files()}
    real_open = Path.open

    def full_disk(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if self.name.endswith(".erased"):
            raise OSError(28, "No space left on device")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    # when the erasure reaches the spool
    handle(settings, delivery(redact(ADA), topic="customers/redact"))
    monkeypatch.setattr(Path, "open", real_open)
    # then the spooled delivery is still there, whole, under its name, to be published
    after = {path.name: path.read_bytes() for _, path in Spool(settings.spool_dir).files()}
    assert after == before
    assert not [p for p in Path(settings.spool_dir).rglob(".*")]
