"""gunicorn's own refusals as the API's JSON errors instead of its HTML page.

gunicorn answers a request line past `limit_request_line` (414), headers past
`limit_request_field_size` or `limit_request_fields` (431) and malformed requests (400)
itself, before the app sees them, through `gunicorn.util.write_error(sock, status, reason,
message)`, which every worker class's `handle_error` calls at the time of the error. That
function is not a documented hook: it is replaced here, in the serving process only, and
gunicorn's version range is pinned in pyproject.toml; tests/integration/test_api_errors.py
checks the answers through a real gunicorn, so an upgrade that moves it fails loudly.
gunicorn's message (which may quote the request) is not passed on."""

from __future__ import annotations

import json
import sys
from typing import Any

from ingest.errors import code_and_detail

MARK = "_refund_sink_json"


def install() -> None:
    """Replace gunicorn's error page writer with a JSON one, if gunicorn runs this process
    (a no-op elsewhere, and when already done)."""
    util: Any = sys.modules.get("gunicorn.util")
    if util is None or getattr(util.write_error, MARK, False):
        return

    def write_error(sock: Any, status: int, reason: str, _message: str) -> None:
        code, detail = code_and_detail(status, reason)
        body = json.dumps({"error": code, "detail": detail}).encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        util.write_nonblock(sock, head.encode("latin-1") + body)

    setattr(write_error, MARK, True)
    util.write_error = write_error
