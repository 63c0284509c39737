"""Shops and their access tokens: encrypted at rest (the stored bytes never hold the token),
readable after a key rotation, never listed; and the `refund-sink shop` commands around them.
Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from refund_sink.cli import main
from refunds import shops
from refunds.db import session_factory
from refunds.models import Shop
from refunds.settings import ConfigError, Settings

TOKEN = "gst_live_0123456789abcdef"  # noqa: S105 - a test token
NOW = datetime(2025, 3, 1, 10, tzinfo=UTC)


def stored_bytes(settings: Settings) -> list[bytes]:
    """Every column of every shops row, as the database holds it."""
    with session_factory(settings)() as session:
        rows = session.execute(text("SELECT * FROM shops")).all()
    return [str(value).encode() if not isinstance(value, bytes) else value
            for row in rows for value in row]


def test_the_stored_token_is_encrypted_and_reads_back(settings: Settings) -> None:
    # given a key
    keys = shops.cipher([Fernet.generate_key().decode()])
    # when a shop is added under a domain written loosely
    with session_factory(settings).begin() as session:
        added = shops.add("  Shop-One.Example ", TOKEN, keys=keys, now=NOW, session=session)
    # then it is stored normalized, the token nowhere in the row, and it decrypts
    assert added is shops.Added.NEW
    assert not any(TOKEN.encode() in value for value in stored_bytes(settings))
    with session_factory(settings)() as session:
        assert [s.domain for s in session.scalars(select(Shop))] == ["shop-one.example"]
        assert shops.access_token("SHOP-ONE.example", keys=keys, session=session) == TOKEN
        assert shops.access_token("other", keys=keys, session=session) is None


def test_a_token_stored_under_the_old_key_reads_after_a_new_key_is_put_first(
        settings: Settings) -> None:
    # given a token stored under the old key
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with session_factory(settings).begin() as session:
        shops.add("shop-one", TOKEN, keys=shops.cipher([old]), now=NOW, session=session)
    # when a new key is put first, then every token is re-encrypted under it
    rotated = shops.cipher([new, old])
    with session_factory(settings)() as session:
        assert shops.access_token("shop-one", keys=rotated, session=session) == TOKEN
    with session_factory(settings).begin() as session:
        assert shops.rotate(keys=rotated, session=session) == 1
    # then the new key alone reads it, and the old one alone no longer does
    with session_factory(settings)() as session:
        assert shops.access_token("shop-one", keys=shops.cipher([new]), session=session) == TOKEN
        with pytest.raises(shops.UnreadableToken, match="shop-one") as raised:
            shops.access_token("shop-one", keys=shops.cipher([old]), session=session)
    assert old not in str(raised.value) and TOKEN not in str(raised.value)


@pytest.mark.parametrize("keys", [[], ["not-a-key"]], ids=["missing", "malformed"])
def test_a_missing_or_bad_key_is_a_one_line_error_that_never_repeats_it(keys: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        shops.cipher(keys)
    message = str(raised.value)
    assert "\n" not in message and "REFUND_SINK_SECRET_KEY" in message
    assert "not-a-key" not in message
    if not keys:
        assert "Fernet.generate_key()" in message


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REFUND_SINK_SECRET_KEY", Fernet.generate_key().decode())
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return token_file


def test_the_shop_commands_add_list_and_remove_without_ever_printing_the_token(
        cli_env: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    # when a shop is added from a token file, listed both ways, replaced and removed
    assert main(["shop", "add", "Shop-One", "--access-token-file", str(cli_env)]) == 0
    assert main(["shop", "list"]) == 0
    assert main(["shop", "list", "--json"]) == 0
    assert main(["shop", "add", "shop-one", "--access-token-file", str(cli_env)]) == 0
    listed = capsys.readouterr()
    assert main(["shop", "remove", "shop-one"]) == 0
    assert main(["shop", "remove", "shop-one"]) == 1
    removed = capsys.readouterr()
    # then the outputs name the shop, never the token, and the row is gone
    assert "added shop shop-one" in listed.out and "replaced the access token" in listed.out
    assert '"domain": "shop-one"' in listed.out
    assert TOKEN not in listed.out + listed.err + removed.out + removed.err
    assert "removed shop shop-one" in removed.out and "no shop shop-one" in removed.err
    assert stored_bytes(settings) == []


def test_shop_add_without_a_key_says_how_to_make_one(
        cli_env: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("REFUND_SINK_SECRET_KEY")
    assert main(["shop", "add", "shop-one", "--access-token-file", str(cli_env)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Fernet.generate_key()" in error
    assert stored_bytes(settings) == []


def test_shop_rotate_key_re_encrypts_under_the_first_key(
        cli_env: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # given a shop added under the old key
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("REFUND_SINK_SECRET_KEY", old)
    assert main(["shop", "add", "shop-one", "--access-token-file", str(cli_env)]) == 0
    # when a new key is put first and the tokens rotated
    monkeypatch.setenv("REFUND_SINK_SECRET_KEY", f"{new},{old}")
    assert main(["shop", "rotate-key"]) == 0
    # then the new key alone reads the token
    assert "re-encrypted 1 access token" in capsys.readouterr().out
    with session_factory(settings)() as session:
        assert shops.access_token("shop-one", keys=shops.cipher([new]), session=session) == TOKEN
