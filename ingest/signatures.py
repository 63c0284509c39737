"""Delivery authentication: Genstore's HMAC header, or a Standard Webhooks signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from refunds.settings import ConfigError

GENSTORE_SIGNATURE_HEADER = "x-genstore-hmac-sha256"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def genstore_signature(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(secret, body)), as Genstore sends it."""
    return base64.b64encode(_digest(body, secret)).decode("ascii")


def _digest(body: bytes, secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()


def check_standard_secret(secret: str | None) -> None:
    """A malformed whsec_ secret would turn every signed delivery into a 401: refuse to start."""
    if secret is None:
        return
    try:
        Webhook(secret)
    except Exception:
        raise ConfigError("STANDARD_WEBHOOK_SECRET is not a valid whsec_ secret") from None


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
        matched |= hmac.compare_digest(_digest(body, secret), given)
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
