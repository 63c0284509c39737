"""API tokens: random, shown once, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from refunds.models import ApiToken

READ_REFUNDS = "read_refunds"
WRITE_REFUNDS = "write_refunds"
SCOPES = (READ_REFUNDS, WRITE_REFUNDS)
IMPLIED = {WRITE_REFUNDS: {READ_REFUNDS}}
TOKEN_PREFIX = "rst_"  # noqa: S105 - a prefix, not a secret


class UnknownScope(ValueError):
    pass


def create(scopes: Iterable[str], *, name: str | None, session: Session) -> str:
    """Return the new token; it cannot be recovered later."""
    wanted = sorted({scope.strip() for scope in scopes if scope.strip()})
    unknown = [scope for scope in wanted if scope not in SCOPES]
    if unknown or not wanted:
        raise UnknownScope(f"scopes must be among {', '.join(SCOPES)}; got {wanted or 'none'}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            token_hash=digest(token),
            scopes=",".join(wanted),
            created_at=datetime.now(UTC),
        )
    )
    return token


def scopes_of(token: str, *, session: Session) -> frozenset[str] | None:
    """The scopes a token grants (implied ones included), or None for an unknown token."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == digest(token), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    granted = set(row.scopes.split(","))
    for scope in list(granted):
        granted |= IMPLIED.get(scope, set())
    return frozenset(granted)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
