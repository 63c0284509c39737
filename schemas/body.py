"""The bytes a JSON parser reads from a delivery body.

RFC 8259 forbids a sender to put a UTF-8 byte order mark before JSON but lets a parser ignore
one; pydantic's parser does not, so a body some sender's HTTP stack prefixed with a BOM would be
dead-lettered `invalid_json` although it is JSON. Only the parser's view loses the mark: the
archive, the dedupe hash and the signature keep the bytes as received."""

from __future__ import annotations

UTF8_BOM = b"\xef\xbb\xbf"


def json_bytes(body: bytes) -> bytes:
    """`body` without one leading UTF-8 BOM (a second one is not JSON: it stays)."""
    return body.removeprefix(UTF8_BOM)
