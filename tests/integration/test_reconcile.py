"""Pull reconciliation against the fake Genstore (a real HTTP server): refunds the webhooks never
delivered are found and, applied through the queue and the real apply path, land once; a lost
`refunded` is brought to `refunded`; a pulled snapshot equal to a received message changes
nothing; throttling and errors are retried, a hang and a wrong token fail the shop with what
was found kept; the access token never reaches the output or the logs. Runs on SQLite and
PostgreSQL, with the queue in the test's Redis."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from deliveries import apply, delivery, view
from fake_genstore import FakeGenstore, FakeShop, refund
from payloads import camel_event
from queued_messages import take_queued

from genstore_api.client import Budget, GenstoreClient, Retries
from genstore_api.reconcile import Outcome, Report, pulled_delivery, reconcile
from genstore_api.reconcile import apply as apply_report
from refund_sink.cli import main
from refunds import shops
from refunds.apply import Outcome as Applied
from refunds.db import session_factory
from refunds.delivery import Origin, RawDelivery
from refunds.models import Shop
from refunds.settings import Settings

SHOP = "shop-one.example"
TOKEN = "gst-reconcile-secret-token"  # noqa: S105 - a test token
SINCE = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 1, tzinfo=UTC)
KEY = Fernet.generate_key().decode()


def genstore_refunds() -> list[dict[str, Any]]:
    """Four refunds over two orders; the sink is sent the first two by webhook."""
    return [camel_event(f"700{n}", f"900{n // 2}", status="in_progress", price=f"1{n}.00",
                        update_time=f"2025-03-01T10:0{n}:00Z")["refund"] for n in range(4)]


@pytest.fixture
def fake() -> Iterator[FakeGenstore]:
    server = FakeGenstore({SHOP: FakeShop(TOKEN, genstore_refunds())}).start()
    yield server
    server.stop()


@pytest.fixture
def registered(api_settings: Settings) -> Settings:
    with session_factory(api_settings).begin() as session:
        shops.add(SHOP, TOKEN, keys=shops.cipher([KEY]), now=NOW, session=session)
    return api_settings


def received(settings: Settings, *refunds: dict[str, Any]) -> None:
    for pulled in refunds:
        assert apply(settings, delivery({"refund": pulled}, shop=SHOP)) is Applied.APPLIED


def client(fake: FakeGenstore, token: str = TOKEN, read_timeout: float = 5.0) -> GenstoreClient:
    return GenstoreClient(SHOP, token, base_url=fake.url, read_timeout=read_timeout,
                          retries=Retries(3, 0.01, 0.5), budget=Budget(100, 0.0))


def run(settings: Settings, fake: FakeGenstore, **options: Any) -> Report:
    with session_factory(settings)() as session:
        return reconcile(client(fake, **{k: v for k, v in options.items() if k != "orders"}),
                         session=session, since=SINCE, orders=options.get("orders", ()),
                         now=NOW)


def published(report: Report) -> list[RawDelivery]:
    found: list[RawDelivery] = []
    apply_report(report, found.append, now=NOW)
    return found


@pytest.fixture
def cli(registered: Settings, fake: FakeGenstore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": registered.database_url,
                        "REDIS_URL": registered.redis_url,
                        "REFUND_SINK_REDIS_KEY_PREFIX": registered.redis_key_prefix,
                        "REFUND_SINK_QUEUE": registered.queue,
                        "GENSTORE_API_URL": fake.url, "REFUND_SINK_SECRET_KEY": KEY}.items():
        monkeypatch.setenv(name, value)
    return registered


def reconcile_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any],
                                                                              str]:
    code = main(["reconcile", "--shop", SHOP, "--since", "2025-01-01", "--json", *extra])
    out, err = capsys.readouterr()
    return code, json.loads(out), out + err


def shop_row(settings: Settings) -> Shop:
    with session_factory(settings)() as session:
        found = session.get(Shop, SHOP)
        assert found is not None
        return found


def test_refunds_never_received_are_found_applied_once_and_a_second_run_changes_nothing(
        cli: Settings, fake: FakeGenstore, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # given the sink received the first two of Genstore's four refunds
    received(cli, *genstore_refunds()[:2])
    # when reconcile runs with --apply
    code, found, shown = reconcile_json(capsys, "--apply")
    # then the two others are missing, queued as pulled deliveries, and applied once
    assert code == 0
    assert found["checked_orders"] == ["9000", "9001"] and found["applied"] == 2
    assert [m["refund_id"] for m in found["missing"]] == ["7002", "7003"]
    assert found["differs"] == [] and found["only_local"] == []
    queued = take_queued(cli)
    assert [(d.origin, d.topic, d.shop) for d in queued] == [(Origin.PULLED, "refunds/create",
                                                             SHOP)] * 2
    assert [apply(cli, d) for d in queued] == [Applied.APPLIED] * 2
    assert view(cli, "7003", shop=SHOP)["refund_price"] == "13.00"
    assert shop_row(cli).last_reconcile_outcome == "ok"
    # when it runs again, and the first run's deliveries come again
    code, again, shown_again = reconcile_json(capsys, "--apply")
    # then nothing is missing or queued, and the repeated deliveries are duplicates
    assert code == 0 and again["missing"] == [] and again["applied"] == 0
    assert take_queued(cli) == []
    assert [apply(cli, d) for d in queued] == [Applied.DUPLICATE_DELIVERY] * 2
    assert [view(cli, f"700{n}", shop=SHOP)["events_applied"] for n in range(4)] == [1] * 4
    assert "reconcile shop-one.example: ok, 2 orders checked, 2 missing" in caplog.text
    assert TOKEN not in shown + shown_again + caplog.text


def test_a_lost_refunded_webhook_is_brought_to_refunded(
        registered: Settings, fake: FakeGenstore) -> None:
    # given the sink saw refund 7001 in progress; Genstore has it refunded, at a new price
    first = genstore_refunds()[1]
    received(registered, first)
    fake.put(SHOP, {**first, "status": "refunded", "refundPrice": "9.50",
                    "updateTime": "2025-03-02T08:00:00Z"})
    # when reconciled and the pulled deliveries applied
    report = run(registered, fake, orders=["9000"])
    deliveries = published(report)
    assert [apply(registered, d) for d in deliveries] == [Applied.APPLIED] * 4
    # then it differed (the three others were missing), and is now refunded at Genstore's price
    assert [(f.refund_id, f.local and f.local.status, f.genstore and f.genstore.status)
            for f in report.differs] == [("7001", "in_progress", "refunded")]
    refund_view = view(registered, "7001", shop=SHOP)
    assert (refund_view["status"], refund_view["refund_price"]) == ("refunded", "9.50")
    assert refund_view["events_applied"] == 2


def test_a_pulled_snapshot_equal_to_a_received_message_is_a_duplicate(
        registered: Settings, fake: FakeGenstore) -> None:
    # given the sink received every refund Genstore has
    received(registered, *genstore_refunds())
    # when reconciled
    report = run(registered, fake)
    # then nothing is found; a pulled snapshot applied anyway is the same message
    assert (report.outcome, report.missing, report.differs, report.only_local) == (
        Outcome.OK, [], [], [])
    snapshot = pulled_delivery(SHOP, genstore_refunds()[0], received_at=NOW)
    assert apply(registered, snapshot) is Applied.DUPLICATE_MESSAGE
    assert view(registered, "7000", shop=SHOP)["events_applied"] == 1


def test_a_refund_only_the_sink_has_is_reported(registered: Settings, fake: FakeGenstore) -> None:
    received(registered, *genstore_refunds(),
             refund("7999", "9001", "in_progress", "1.00", "2025-03-01T11:00:00Z"))
    report = run(registered, fake)
    assert [(f.refund_id, f.order_id) for f in report.only_local] == [("7999", "9001")]
    assert published(report) == []


def test_throttling_and_server_errors_are_retried_and_the_run_completes(
        registered: Settings, fake: FakeGenstore) -> None:
    fake.fail_next("429", retry_after=0.05)
    fake.fail_next("500", times=2, after=1)  # the listing's retry passes, 9000 fails twice
    report = run(registered, fake)
    assert report.outcome is Outcome.OK and report.error is None
    assert [f.refund_id for f in report.missing] == ["7000", "7001", "7002", "7003"]
    assert len(fake.requests) == 2 + 3 + 1  # the listing twice, 9000 three times, 9001 once


def test_a_hang_fails_the_shop_and_keeps_what_was_found_before(
        registered: Settings, fake: FakeGenstore) -> None:
    # given Genstore answers the order given, then hangs
    fake.fail_next("hang", times=10, hang_seconds=3, after=1)
    # when reconciled with a short read timeout
    report = run(registered, fake, orders=["9001"], read_timeout=0.2)
    # then the shop failed, and order 9001's refunds are still reported
    assert report.outcome is Outcome.UNAVAILABLE and "ReadTimeout" in (report.error or "")
    assert report.checked_orders == ["9001"]
    assert [f.refund_id for f in report.missing] == ["7002", "7003"]


def test_a_wrong_token_is_reported_once_recorded_and_never_shown(
        cli: Settings, fake: FakeGenstore, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # given Genstore knows another token for the shop
    fake.shops[SHOP].token = "the-right-token"  # noqa: S105
    # when reconciled
    code, found, shown = reconcile_json(capsys)
    # then it failed at the first request, said so in one line, and recorded it on the shop
    assert code == 1 and len(fake.requests) == 1
    assert found["outcome"] == "unauthorized" and found["missing"] == []
    error_lines = [line for line in shown.splitlines() if line.startswith("refund-sink: error")]
    assert len(error_lines) == 1 and "unauthorized" in error_lines[0]
    assert shop_row(cli).last_reconcile_outcome == "unauthorized"
    assert shop_row(cli).last_reconciled_at is not None
    assert TOKEN not in shown + caplog.text and fake.tokens_seen == [TOKEN]
