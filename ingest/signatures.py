"""Delivery authentication: Genstore's HMAC header, or a Standard Webhooks signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

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


class _RawBodyWebhook(Webhook):
    """The reference library signs the body decoded as UTF-8 and encoded again, so a signed
    body that is not UTF-8 could never verify (401 for an authenticated delivery). Bodies
    arrive here decoded with surrogateescape; signing encodes them back to the exact bytes."""

    def sign(self, msg_id: str, timestamp: datetime, data: str) -> str:
        stamp = str(math.floor(timestamp.replace(tzinfo=UTC).timestamp()))
        signed = f"{msg_id}.{stamp}.".encode() + data.encode("utf-8", "surrogateescape")
        mac = hmac.new(self._whsecret, signed, hashlib.sha256).digest()
        return f"v1,{base64.b64encode(mac).decode('ascii')}"


def symmetric_signatures(header: str) -> str:
    """The header's `v1,<base64>` entries, space-delimited. The spec's header is a list (a
    sender rotating its secret signs with both; `v1a` is an asymmetric signature) of which any
    one valid entry authenticates; the reference library gives up on the first entry it cannot
    split or decode, so such an entry would hide a valid one after it."""
    entries = []
    for entry in header.split():
        version, _, signature = entry.partition(",")
        if version != "v1":
            continue
        try:
            base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            continue
        entries.append(entry)
    return " ".join(entries)


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str | None) -> bool:
    """Standard Webhooks via its reference library (5-minute timestamp tolerance), over the
    body's exact bytes, against every readable `v1` signature the header lists."""
    if not secret:
        return False
    wanted = {name: headers.get(name, "") for name in STANDARD_HEADERS}
    wanted["webhook-signature"] = symmetric_signatures(wanted["webhook-signature"])
    if not all(wanted.values()):
        return False
    try:
        text = body.decode("utf-8", "surrogateescape")
        _RawBodyWebhook(secret).verify(text, wanted, json_parse=False)
    except (WebhookVerificationError, ValueError, binascii.Error):
        return False
    return True


def verify(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str], standard_secret: str | None
) -> bool:
    if GENSTORE_SIGNATURE_HEADER in headers:
        return verify_genstore(body, headers.get(GENSTORE_SIGNATURE_HEADER), secrets)
    return verify_standard(body, headers, standard_secret)
