"""Delivery authentication: Genstore's HMAC header, or a Standard Webhooks signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

GENSTORE_SIGNATURE_HEADER = "x-genstore-hmac-sha256"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def genstore_signature(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(secret, body)), as Genstore sends it."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_genstore(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """Compare in constant time against every configured secret (rotation keeps two)."""
    if not header or not secrets:
        return False
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    matched = False
    for secret in secrets:
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
        matched |= hmac.compare_digest(expected, given)
    return matched


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str | None) -> bool:
    """Standard Webhooks via its reference library (5-minute timestamp tolerance)."""
    if not secret:
        return False
    wanted = {name: headers.get(name, "") for name in STANDARD_HEADERS}
    if not all(wanted.values()):
        return False
    try:
        Webhook(secret).verify(body, wanted, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error):
        return False
    return True


def verify(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], standard_secret: str | None
) -> bool:
    if GENSTORE_SIGNATURE_HEADER in headers:
        return verify_genstore(body, headers.get(GENSTORE_SIGNATURE_HEADER), secrets)
    return verify_standard(body, headers, standard_secret)
