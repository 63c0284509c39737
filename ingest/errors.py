"""Every error of the HTTP API as JSON `{"error": CODE, "detail": TEXT}`: the views' own, and
Flask's for routing (404, 405), limits (414, 431) and bugs (500), in the API's own words,
never an exception's text."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import BadRequest, HTTPException

# Codes and details for what Flask and werkzeug raise before or around a view.
KNOWN = {
    400: ("bad_request", "the request is malformed"),
    401: ("unauthorized", "a valid bearer token is required"),
    403: ("forbidden", "the token does not allow this"),
    404: ("not_found", "nothing is here"),
    405: ("method_not_allowed", "this method is not allowed here"),
    413: ("body_too_large", "the body is larger than this server accepts"),
    414: ("uri_too_long", "the request line is longer than this server accepts"),
    431: ("headers_too_large", "the request headers are larger than this server accepts"),
    500: ("internal_error", "the server failed to answer; the failure is logged"),
    501: ("not_implemented", "the server does not support this request"),
}


class NulCharacter(BadRequest):
    """A path or query carrying a NUL character; its description names where."""


def error(status: int, code: str, detail: str, **extra: Any) -> tuple[Response, int]:
    """The API's error answer: `{"error": code, "detail": detail, **extra}`."""
    return jsonify(error=code, detail=detail, **extra), status


def code_and_detail(status: int, name: str) -> tuple[str, str]:
    """Known statuses in the API's words; others by their HTTP reason."""
    fallback = name.lower().replace(" ", "_").replace("'", "")
    return KNOWN.get(status, (fallback, name.lower()))


def install(app: Flask) -> None:
    """JSON for every HTTP error Flask answers itself. A bug is logged by Flask (with its
    traceback) before this answers 500; the answer never carries the exception's text."""

    @app.before_request
    def refuse_nul() -> None:
        """No stored id, shop or key holds a NUL character (the ingest replaces it in headers,
        the parser refuses it in payloads) and PostgreSQL refuses one in a parameter: a path
        or query carrying one is a 400 before any view looks it up, not a 500 from the
        database (the console answers with its own 400 page)."""
        if "\x00" in request.path:
            raise NulCharacter("the path must not contain NUL characters")
        for key, value in request.args.items(multi=True):
            if "\x00" in key + value:
                raise NulCharacter(f"{key!r:.40} must not contain NUL characters")

    @app.errorhandler(HTTPException)
    def http_error(raised: HTTPException) -> tuple[Response, int]:
        status = raised.code or 500
        code, detail = code_and_detail(status, raised.name)
        if isinstance(raised, NulCharacter):
            detail = raised.description or detail
        allowed = raised.get_response().headers.get("Allow")
        if allowed:
            detail = f"{request.method} is not allowed here; allowed: {allowed}"
        response, _ = error(status, code, detail)
        if allowed:
            response.headers["Allow"] = allowed
        return response, status
