"""Response headers of every console page: not cached (pages show customer data), never
framed, and a content security policy that runs only the console's own scripts (htmx, served
from /desk/static/), so an escaping mistake cannot run injected script."""

from __future__ import annotations

from flask import Response, request

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


def secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response
