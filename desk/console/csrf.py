"""Flask-WTF's CSRF protection, typed (the package ships no type information): the one
place that imports it.

What the console relies on, tested in tests/integration/test_console.py: with
WTF_CSRF_CHECK_DEFAULT off, `CSRFProtect` checks nothing by itself (the webhook and the JSON
API stay free of it) and `protect()` checks the current request when called, raising
`CSRFError` (a 400) for a missing, wrong or expired token in the `csrf_token` form field or
the `X-CSRFToken` header; `generate_csrf()` gives the current session's token."""

from __future__ import annotations

from flask import Flask
from flask_wtf.csrf import CSRFProtect, generate_csrf  # type: ignore[import-untyped]

_protect = CSRFProtect()


def init(app: Flask) -> None:
    _protect.init_app(app)


def protect() -> None:
    """Check the current request (only those with a POST-like method); raises
    CSRFError, a BadRequest."""
    _protect.protect()


def token() -> str:
    found: str = generate_csrf()
    return found
