"""Signing deliveries the way Genstore and Standard Webhooks senders do."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def genstore_headers(body: bytes, secret: str, topic: str = "refunds/create",
                     **extra: str) -> dict[str, str]:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return {
        "X-Genstore-Hmac-Sha256": base64.b64encode(digest).decode("ascii"),
        "X-Genstore-Topic": topic,
        "Content-Type": "application/json",
        **extra,
    }


def standard_headers(body: bytes, secret: str, msg_id: str = "msg_1",
                     timestamp: int | None = None, topic: str = "refunds/create") -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signed = f"{msg_id}.{stamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature}",
        "X-Genstore-Topic": topic,
        "Content-Type": "application/json",
    }
