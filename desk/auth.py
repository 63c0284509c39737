"""Bearer tokens for the read and operations API: scopes, and the shop a token may see."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Response, g, request
from flask.typing import ResponseReturnValue

from ingest.errors import error
from ingest.services import services
from refunds import tokens
from refunds.delivery import shop_key

P = ParamSpec("P")
R = TypeVar("R", bound=ResponseReturnValue)


class OtherShop(Exception):
    """A token limited to one shop asked for another: answered as not found, so the token
    learns nothing of other shops."""


def require_scope(scope: str) -> Callable[[Callable[P, R]], Callable[P, ResponseReturnValue]]:
    """401 (with `WWW-Authenticate: Bearer`) without a valid token, 403 without the scope;
    otherwise the view runs with the token's grant in `flask.g.grant`."""

    def decorate(view: Callable[P, R]) -> Callable[P, ResponseReturnValue]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return _unauthorized("send Authorization: Bearer <token>", None)
            with services().sessions() as session:
                grant = tokens.grant_of(token.strip(), session=session)
            if grant is None:
                return _unauthorized("the token is unknown, revoked or expired", "invalid_token")
            if scope not in grant.scopes:
                return error(403, "forbidden", f"the token lacks the {scope} scope",
                             required_scope=scope)
            g.grant = grant
            try:
                return view(*args, **kwargs)
            except OtherShop:
                return error(404, "not_found", "not found for this token")

        return guarded

    return decorate


def visible_shop(requested: str | None) -> str | None:
    """The shop a query is limited to: the one asked for (read as the ingest stores shops),
    within the token's own. None: every shop. Raises OtherShop when a token for one shop
    names another."""
    wanted = shop_key(requested)
    own: str | None = g.grant.shop
    if own is None:
        return wanted
    if wanted not in (None, own):
        raise OtherShop
    return own


def _unauthorized(detail: str, bearer_error: str | None) -> tuple[Response, int]:
    response, status = error(401, "unauthorized", detail)
    challenge = f'Bearer realm="refund-sink", error="{bearer_error}"' if bearer_error else (
        'Bearer realm="refund-sink"')
    response.headers["WWW-Authenticate"] = challenge
    return response, status
