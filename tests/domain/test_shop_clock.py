"""Each shop's own clock and currency: a registered shop's naive times are read in its zone,
GENSTORE_NAIVE_TZ is the fallback, times with an offset are untouched, and a refund without a
currency takes the shop's. A zone change reads the stored messages again, with their
fingerprints kept. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import make_settings
from cryptography.fernet import Fernet
from deliveries import apply, delivery, view
from fake_genstore import FakeGenstore, FakeShop
from oracle import actual_state, expected_state
from payloads import camel_event, to_body
from sqlalchemy import select

from refund_sink.cli import main
from refunds import shop_clock, shops
from refunds.apply import Outcome
from refunds.db import session_factory
from refunds.models import MessageRecord, Shop
from refunds.settings import Settings

KEY = Fernet.generate_key().decode()
SHOP = "clock.example"
TOKEN = "gst-clock-token"  # noqa: S105 - a test token
NOW = datetime(2025, 6, 1, tzinfo=UTC)
# The shop's wall time 10:00 on 1 March, and the offsets that zone had then.
NAIVE = "2025-03-01 10:00:00"
OFFSETS = {"America/New_York": "-05:00", "Asia/Shanghai": "+08:00", "UTC": "+00:00"}
# A message with an offset, between the naive time read in UTC and read in each zone: in New
# York (15:00Z) the naive one is the later, in Shanghai (02:00Z) the earlier, in UTC (10:00Z)
# the later again but against another instant.
WITH_OFFSET = {"America/New_York": "2025-03-01T12:00:00Z", "Asia/Shanghai": "2025-03-01T05:00:00Z"}


def register(settings: Settings, zone: str | None = None, currency: str | None = None) -> None:
    with session_factory(settings).begin() as session:
        shops.add(SHOP, TOKEN, keys=shops.cipher([KEY]), now=NOW, session=session)
        shops.set_clock(SHOP, shops.Clock(zone, currency), session=session)


def naive_message(**extra: Any) -> dict[str, Any]:
    return camel_event(status="in_progress", price="30.00", note="naive", update_time=NAIVE,
                       **extra)


def offset_message(at: str) -> dict[str, Any]:
    return camel_event(status="in_progress", price="20.00", note="offset", update_time=at)


def as_read_in(zone: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The payload with its naive time written with the zone's offset: the oracle's input."""
    refund = dict(payload["refund"])
    refund["updateTime"] = NAIVE.replace(" ", "T") + OFFSETS[zone]
    return {"refund": refund}


def fingerprints(settings: Settings) -> dict[str, str]:
    with session_factory(settings)() as session:
        return {row.note: row.fingerprint for row in session.scalars(select(MessageRecord))}


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Shanghai"])
@pytest.mark.parametrize("naive_first", [True, False])
def test_a_shops_naive_times_are_read_in_its_zone(settings: Settings, zone: str,
                                                   naive_first: bool) -> None:
    # given a shop in `zone` and two messages of one refund, one naive, one with an offset
    register(settings, zone)
    naive, offset = naive_message(), offset_message(WITH_OFFSET[zone])
    # when both are applied, in either order
    for payload in ([naive, offset] if naive_first else [offset, naive]):
        assert apply(settings, delivery(payload, shop=SHOP)) is Outcome.APPLIED
    # then the refund is the oracle's, with the naive time read in the shop's zone
    assert actual_state(view(settings, "7001", SHOP)) == expected_state(
        [as_read_in(zone, naive), offset])
    with session_factory(settings)() as session:
        stored = session.scalars(select(MessageRecord.occurred_at)
                                 .where(MessageRecord.note == "naive")).one()
    assert stored == datetime.fromisoformat(NAIVE + OFFSETS[zone]).astimezone(UTC)


def test_without_a_shop_zone_naive_times_are_read_in_genstore_naive_tz(db_url: str) -> None:
    # given GENSTORE_NAIVE_TZ Asia/Shanghai, one shop not registered (none is) ...
    settings = make_settings(db_url, naive_tz="Asia/Shanghai")
    assert apply(settings, delivery(naive_message(), shop="stranger.example")) is Outcome.APPLIED
    # ... and, once shops are registered, one registered without a zone
    register(settings)
    assert apply(settings, delivery(naive_message(), shop=SHOP)) is Outcome.APPLIED
    # then both read the naive time in Shanghai
    shanghai = datetime(2025, 3, 1, 2, tzinfo=UTC)
    with session_factory(settings)() as session:
        assert set(session.scalars(select(MessageRecord.occurred_at))) == {shanghai}


def test_a_refund_without_a_currency_takes_the_shops_not_the_customers(
        settings: Settings) -> None:
    register(settings, "UTC", "EUR")
    customer = {"id": "c1", "currency": "USD"}
    assert apply(settings, delivery(naive_message(customer=customer), shop=SHOP)) \
        is Outcome.APPLIED
    assert apply(settings, delivery(camel_event("7002", currency="GBP", customer=customer),
                                    shop=SHOP)) is Outcome.APPLIED
    assert view(settings, "7001", SHOP)["currency"] == "EUR"
    assert view(settings, "7002", SHOP)["currency"] == "GBP"  # its own comes first


def test_a_zone_change_reads_the_stored_messages_again_and_keeps_their_fingerprints(
        settings: Settings) -> None:
    # given a shop without a zone (naive read in UTC) and the two messages of New York's case
    register(settings)
    naive, offset = naive_message(), offset_message(WITH_OFFSET["America/New_York"])
    for payload in (naive, offset):
        assert apply(settings, delivery(payload, shop=SHOP)) is Outcome.APPLIED
    before = actual_state(view(settings, "7001", SHOP))
    assert before == expected_state([as_read_in("UTC", naive), offset])
    assert before["refund_price"] == "20.00"  # the offset message read as the later
    printed = fingerprints(settings)
    # when the shop's zone becomes New York
    with session_factory(settings).begin() as session:
        done = shop_clock.change(SHOP, shops.Clock("America/New_York", None), naive_tz="UTC",
                                 now=NOW, session=session)
    # then the naive message is read again and the refund is New York's
    assert done == shop_clock.Recomputed(messages=1, refunds=1, unreadable=0)
    after = actual_state(view(settings, "7001", SHOP))
    assert after == expected_state([as_read_in("America/New_York", naive), offset])
    assert after["refund_price"] == "30.00"
    with session_factory(settings)() as session:
        record = session.scalars(select(MessageRecord).where(MessageRecord.note == "naive")).one()
        assert record.occurred_at == datetime(2025, 3, 1, 15, tzinfo=UTC)
        assert record.message["occurred_at"].startswith("2025-03-01T15:00:00")
    # and the fingerprints are those recorded; a second recompute changes nothing
    assert fingerprints(settings) == printed
    with session_factory(settings).begin() as session:
        again = shop_clock.recompute(SHOP, naive_tz="UTC", now=NOW, session=session)
    assert again == shop_clock.Recomputed(messages=0, refunds=0, unreadable=0)
    # and a redelivery of the naive message is still a duplicate
    assert apply(settings, delivery(naive, shop=SHOP, delivery_id=_delivery_of(
        settings, "naive"))) is Outcome.DUPLICATE_DELIVERY


def _delivery_of(settings: Settings, note: str) -> str:
    with session_factory(settings)() as session:
        return session.scalars(select(MessageRecord.delivery_id)
                               .where(MessageRecord.note == note)).one()


def shop_update(zone: str, currency: str = "USD") -> bytes:
    """Genstore's shop object as `shop/update` carries it (snake case, as webhooks are)."""
    return to_body({"id": 1, "domain": SHOP, "iana_timezone": zone, "currency": currency})


def test_shop_update_sets_the_clock_and_reads_the_shops_messages_again(
        settings: Settings) -> None:
    # given a shop without a zone and a naive message read in UTC
    register(settings)
    naive, offset = naive_message(), offset_message(WITH_OFFSET["Asia/Shanghai"])
    assert apply(settings, delivery(naive, shop=SHOP)) is Outcome.APPLIED
    # when a shop/update says Asia/Shanghai, and the offset message comes after it
    update = delivery(shop_update("Asia/Shanghai", "CNY"), topic="shop/update", shop=SHOP)
    assert apply(settings, update) is Outcome.APPLIED
    assert apply(settings, delivery(offset, shop=SHOP)) is Outcome.APPLIED
    # then the shop has the clock, the refund is Shanghai's, and a redelivery is a duplicate
    with session_factory(settings)() as session:
        shop = session.get(Shop, SHOP)
        assert shop is not None and (shop.iana_timezone, shop.currency) == ("Asia/Shanghai",
                                                                            "CNY")
    assert actual_state(view(settings, "7001", SHOP)) == expected_state(
        [as_read_in("Asia/Shanghai", naive), offset])
    assert apply(settings, update) is Outcome.DUPLICATE_DELIVERY


def test_a_shop_update_with_an_unknown_zone_is_a_dead_letter(settings: Settings) -> None:
    register(settings, "UTC")
    bad = delivery(shop_update("Mars/Olympus"), topic="shop/update", shop=SHOP)
    assert apply(settings, bad) is Outcome.DEAD_LETTERED
    with session_factory(settings)() as session:
        shop = session.get(Shop, SHOP)
        assert shop is not None and shop.iana_timezone == "UTC"


@pytest.fixture
def fake() -> Iterator[FakeGenstore]:
    server = FakeGenstore({SHOP: FakeShop(TOKEN, [], iana_timezone="America/New_York",
                                          currency="USD")}).start()
    yield server
    server.stop()


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, fake: FakeGenstore,
            monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": settings.database_url, "REFUND_SINK_SECRET_KEY": KEY,
                        "GENSTORE_API_URL": fake.url, "GENSTORE_NAIVE_TZ": "UTC"}.items():
        monkeypatch.setenv(name, value)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return token_file


def test_shop_add_refresh_set_and_recompute_against_the_fake_genstore(
        cli_env: Path, settings: Settings, fake: FakeGenstore,
        capsys: pytest.CaptureFixture[str]) -> None:
    # given a naive message applied while no shop is registered (read in UTC)
    naive, offset = naive_message(), offset_message(WITH_OFFSET["America/New_York"])
    for payload in (naive, offset):
        assert apply(settings, delivery(payload, shop=SHOP)) is Outcome.APPLIED
    # when the shop is added: Genstore's shops/info says New York, and the refund is refolded
    assert main(["shop", "add", SHOP, "--access-token-file", str(cli_env)]) == 0
    assert ("/shops/info" in [path for _, path, _ in fake.requests])
    assert "1 refund(s) changed" in capsys.readouterr().out
    assert actual_state(view(settings, "7001", SHOP)) == expected_state(
        [as_read_in("America/New_York", naive), offset])
    # when Genstore moves the shop to Shanghai and it is refreshed
    fake.shops[SHOP].iana_timezone, fake.shops[SHOP].currency = "Asia/Shanghai", "CNY"
    assert main(["shop", "refresh"]) == 0
    assert "zone Asia/Shanghai, currency CNY; 1 refund(s) changed" in capsys.readouterr().out
    # then set back by hand, recomputed again idempotently, and an unknown zone refused
    assert main(["shop", "set", SHOP, "--timezone", "America/New_York"]) == 0
    assert "currency CNY; 1 refund(s) changed" in capsys.readouterr().out
    assert main(["shop", "recompute", SHOP]) == 0
    assert "0 refund(s) changed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["shop", "set", SHOP, "--timezone", "Mars/Olympus"])
    assert actual_state(view(settings, "7001", SHOP)) == expected_state(
        [as_read_in("America/New_York", naive), offset])


def test_shop_add_without_an_answer_adds_the_shop_with_a_warning(
        cli_env: Path, settings: Settings, fake: FakeGenstore,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake.fail_next("500", times=2)
    assert main(["shop", "add", SHOP, "--access-token-file", str(cli_env)]) == 0
    printed = capsys.readouterr()
    assert "added shop" in printed.out and "warning: the zone and currency" in printed.err
    with session_factory(settings)() as session:
        shop = session.get(Shop, SHOP)
        assert shop is not None and (shop.iana_timezone, shop.currency) == (None, None)
