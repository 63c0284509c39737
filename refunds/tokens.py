"""API tokens: random, shown once, stored only as a SHA-256 digest; optionally limited to one
shop and to a lifetime."""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.delivery import shop_key
from refunds.models import ApiToken
from refunds.queries import in_id_range

READ_REFUNDS = "read_refunds"
WRITE_REFUNDS = "write_refunds"
SCOPES = (READ_REFUNDS, WRITE_REFUNDS)
IMPLIED = {WRITE_REFUNDS: {READ_REFUNDS}}
TOKEN_PREFIX = "rst_"  # noqa: S105 - a prefix, not a secret
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
LONGEST = timedelta(days=3650)


class UnknownScope(ValueError):
    pass


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: its scopes (implied ones included) and, when it is
    limited to one, its shop."""

    scopes: frozenset[str]
    shop: str | None = None


class Revoked(enum.Enum):
    NOW = "now"
    ALREADY = "already"
    NOT_FOUND = "not_found"


def parse_scopes(text: str) -> list[str]:
    """`read_refunds,write_refunds` as a sorted list; UnknownScope for anything else."""
    wanted = sorted({scope.strip() for scope in text.split(",") if scope.strip()})
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown or not wanted:
        raise UnknownScope(f"scopes must be among {', '.join(SCOPES)}; got {wanted or 'none'}")
    return wanted


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `45m`, `90s`, `2w`: a whole positive number and a unit, at most ten
    years. ValueError otherwise."""
    found = re.fullmatch(r"([1-9][0-9]{0,8})([smhdw])", text.strip())
    if found is None:
        raise ValueError(f"duration must be a whole number and one of s, m, h, d, w "
                         f"(such as 30d or 12h); got {text!r}")
    duration = timedelta(**{UNITS[found[2]]: int(found[1])})
    if duration > LONGEST:
        raise ValueError(f"duration must be at most {LONGEST.days} days; got {text!r}")
    return duration


def create(
    scopes: Iterable[str],
    *,
    name: str | None,
    session: Session,
    shop: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """Return the new token; it cannot be recovered later. `shop` is read as the ingest
    stores shops (trimmed, lower case). Runs in the caller's transaction, never commits."""
    wanted = parse_scopes(",".join(scopes))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            token_hash=digest(token),
            scopes=",".join(wanted),
            shop=shop_key(shop),
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
    )
    return token


def grant_of(token: str, *, session: Session, now: datetime | None = None) -> Grant | None:
    """What a token allows, or None for an unknown, revoked or expired one."""
    row = valid(token, session=session, now=now)
    return None if row is None else grant(row)


def valid(token: str, *, session: Session, now: datetime | None = None) -> ApiToken | None:
    """The row of a token that is known, not revoked and not expired; else None."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == digest(token), ApiToken.revoked_at.is_(None))
    ).first()
    return row if row is not None and _unexpired(row, now) else None


def valid_by_id(token_id: int, *, session: Session, now: datetime | None = None
                ) -> ApiToken | None:
    """`valid` by the row's id. The console keeps a token's id in its session, never the
    token, and asks this on every request, so a revoked or expired token ends the session at
    once. Reads only, in the caller's session."""
    row = session.get(ApiToken, token_id) if in_id_range(token_id) else None
    if row is None or row.revoked_at is not None or not _unexpired(row, now):
        return None
    return row


def grant(row: ApiToken) -> Grant:
    """What a valid token's row allows: its scopes with the implied ones, and its shop."""
    granted = set(row.scopes.split(","))
    for scope in list(granted):
        granted |= IMPLIED.get(scope, set())
    return Grant(scopes=frozenset(granted), shop=row.shop)


def holder(row: ApiToken) -> str:
    """Who acts with this token, as actions record and pages show it: its name, or
    `token <id>` when it has none."""
    return row.name or f"token {row.id}"


def _unexpired(row: ApiToken, now: datetime | None) -> bool:
    return row.expires_at is None or row.expires_at > (now or _now())


def listing(*, session: Session) -> Sequence[ApiToken]:
    """Every token, oldest first (digests included: callers show what they choose)."""
    return session.scalars(select(ApiToken).order_by(ApiToken.id)).all()


def revoke(token_id: int, *, session: Session) -> Revoked:
    """Revoke a token by its id. Runs in the caller's transaction, never commits."""
    row = session.get(ApiToken, token_id) if in_id_range(token_id) else None
    if row is None:
        return Revoked.NOT_FOUND
    if row.revoked_at is not None:
        return Revoked.ALREADY
    row.revoked_at = _now()
    return Revoked.NOW


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)
