"""The shops the sink acts for and their Genstore access tokens, encrypted at rest with
`REFUND_SINK_SECRET_KEY` (Fernet). A token is decrypted only to call Genstore and never
leaves this module in a repr, a log or a listing.

Key rotation: the variable holds one key or several, comma-separated. The first encrypts, all
decrypt (MultiFernet), so a new key is put first, `rotate` re-encrypts every stored token under
it, and the old key can then be dropped."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from refunds.delivery import shop_key
from refunds.models import Shop
from refunds.settings import ConfigError

HOW_TO_MAKE_A_KEY = (
    "REFUND_SINK_SECRET_KEY is not set: make one with `python -c \"from cryptography.fernet "
    "import Fernet; print(Fernet.generate_key().decode())\"`")


class Added(enum.Enum):
    NEW = "new"
    REPLACED = "replaced"  # the shop was registered: its token is replaced


class UnreadableToken(ConfigError):
    """No key in REFUND_SINK_SECRET_KEY decrypts the stored token."""


def cipher(keys: Sequence[str]) -> MultiFernet:
    """The keys as one MultiFernet; ConfigError (one line, saying how to make a key) when there
    is none or one is not a Fernet key. The error never repeats a key."""
    if not keys:
        raise ConfigError(HOW_TO_MAKE_A_KEY)
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except ValueError:
            raise ConfigError(f"REFUND_SINK_SECRET_KEY: key {position} is not a Fernet key "
                              "(32 url-safe base64-encoded bytes)") from None
    return MultiFernet(fernets)


def add(domain: str, access_token: str, *, keys: MultiFernet, now: datetime,
        session: Session) -> Added:
    """Register `domain` (normalized as deliveries name it) with its token encrypted, or replace
    the token of a registered shop. Runs in the caller's transaction, never commits.
    ValueError for a blank domain or token."""
    shop = _key(domain)
    if not access_token.strip():
        raise ValueError("the access token is empty")
    encrypted = keys.encrypt(access_token.strip().encode())
    existing = session.get(Shop, shop)
    if existing is not None:
        existing.access_token_encrypted = encrypted
        return Added.REPLACED
    session.add(Shop(domain=shop, access_token_encrypted=encrypted, added_at=now,
                     iana_timezone=None, currency=None, last_reconciled_at=None,
                     last_reconcile_outcome=None))
    return Added.NEW


@dataclass(frozen=True)
class Clock:
    """A shop's zone (IANA name) and currency (ISO 4217), each None while unknown."""

    zone: str | None
    currency: str | None


def registered(*, session: Session) -> dict[str, Clock]:
    """The registered shops, by domain, with their clocks, in one query: once there is one, a
    delivery naming another shop is not applied (Genstore's signature covers the body, not
    the shop header, so a captured body replayed under another shop's name would be accepted
    as that shop's). Empty while none is registered: then every shop's deliveries are
    applied."""
    rows = session.execute(select(Shop.domain, Shop.iana_timezone, Shop.currency))
    return {row.domain: Clock(row.iana_timezone, row.currency) for row in rows}


def checked_zone(name: str) -> str:
    """`name` when zoneinfo knows it as a zone; ValueError (one line) otherwise."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (Area/City, e.g. "
                         "America/New_York)") from None
    return name


def checked_currency(code: str) -> str:
    """An ISO 4217 code in upper case; ValueError when it is not three letters."""
    code = code.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError(f"{code!r} is not a currency code (three letters, e.g. USD)")
    return code


def set_clock(domain: str, clock: Clock, *, session: Session) -> Clock | None:
    """Give the registered shop this zone and currency (a None keeps the stored one); the
    clock it had, or None when the shop is not registered. The values are checked
    (`checked_zone`, `checked_currency`): ValueError."""
    shop = session.get(Shop, _key(domain))
    if shop is None:
        return None
    before = Clock(shop.iana_timezone, shop.currency)
    if clock.zone is not None:
        shop.iana_timezone = checked_zone(clock.zone)
    if clock.currency is not None:
        shop.currency = checked_currency(clock.currency)
    return before


def listing(*, session: Session) -> list[Shop]:
    """Every registered shop by domain. The rows carry the encrypted token: whoever shows them
    picks the other fields (`view`)."""
    return list(session.scalars(select(Shop).order_by(Shop.domain)))


def view(shop: Shop) -> dict[str, str | None]:
    """What may be shown of a shop: everything but its token."""
    return {"domain": shop.domain, "iana_timezone": shop.iana_timezone,
            "currency": shop.currency,
            "added_at": _iso(shop.added_at), "last_reconciled_at": _iso(shop.last_reconciled_at),
            "last_reconcile_outcome": shop.last_reconcile_outcome}


def remove(domain: str, *, session: Session) -> bool:
    """Forget the shop and its token; False when it was not registered."""
    removed = session.execute(delete(Shop).where(Shop.domain == _key(domain)))
    return bool(removed.rowcount)  # type: ignore[attr-defined]


def access_token(domain: str, *, keys: MultiFernet, session: Session) -> str | None:
    """The shop's token in clear, or None when the shop is not registered; UnreadableToken
    when no key decrypts it (the key that encrypted it was dropped)."""
    shop = session.get(Shop, _key(domain))
    if shop is None:
        return None
    try:
        return keys.decrypt(shop.access_token_encrypted).decode()
    except InvalidToken:
        raise UnreadableToken(
            f"the access token of {shop.domain} cannot be decrypted with REFUND_SINK_SECRET_KEY:"
            " put the key that encrypted it back (after the new one) or add the shop again"
        ) from None


def rotate(*, keys: MultiFernet, session: Session) -> int:
    """Re-encrypt every stored token under the first key; how many. UnreadableToken when one
    cannot be decrypted. Runs in the caller's transaction."""
    shops = listing(session=session)
    for shop in shops:
        try:
            shop.access_token_encrypted = keys.rotate(shop.access_token_encrypted)
        except InvalidToken:
            raise UnreadableToken(
                f"the access token of {shop.domain} cannot be decrypted with "
                "REFUND_SINK_SECRET_KEY") from None
    return len(shops)


def record_reconcile(domain: str, outcome: str, *, at: datetime, session: Session) -> None:
    """The shop's last reconcile: when and how it ended."""
    session.execute(update(Shop).where(Shop.domain == _key(domain)).values(
        last_reconciled_at=at, last_reconcile_outcome=outcome))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _key(domain: str) -> str:
    shop = shop_key(domain)
    if shop is None:
        raise ValueError("the shop domain is blank")
    return shop
