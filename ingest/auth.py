"""Bearer-token scopes for the read and operations API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from ingest.services import services
from refunds import tokens

P = ParamSpec("P")
R = TypeVar("R", bound=ResponseReturnValue)


def require_scope(scope: str) -> Callable[[Callable[P, R]], Callable[P, ResponseReturnValue]]:
    def decorate(view: Callable[P, R]) -> Callable[P, ResponseReturnValue]:
        @wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return jsonify(error="unauthorized"), 401
            with services().sessions() as session:
                granted = tokens.scopes_of(token.strip(), session=session)
            if granted is None:
                return jsonify(error="unauthorized"), 401
            if scope not in granted:
                return jsonify(error="forbidden", required_scope=scope), 403
            return view(*args, **kwargs)

        return guarded

    return decorate
