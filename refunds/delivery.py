"""The raw delivery as the ingest received it: body bytes, the headers processing needs, and
the time received. Its wire form, as queued and spooled, is `broker.wire`'s."""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

TOPIC_HEADER = "x-genstore-topic"
SHOP_HEADER = "x-genstore-shop-domain"
DELIVERY_ID_HEADERS = ("x-genstore-webhook-id", "webhook-id")
TRIGGERED_AT_HEADER = "x-genstore-triggered-at"
SIGNATURE_HEADERS = frozenset({"x-genstore-hmac-sha256", "webhook-signature"})
KEPT_PREFIXES = ("x-genstore-", "webhook-")
KEPT_HEADERS = frozenset({"content-type", "user-agent"})
REDACTED = "[redacted]"
DEFAULT_SHOP = "default"
MAX_KEY_LENGTH = 255  # the database's column width for ids, topics and shops

DeliveryKey = tuple[str, str]  # (shop, delivery id)


class Origin(enum.StrEnum):
    """How a delivery reached the queue; a refund's timeline shows it."""

    WEBHOOK = "webhook"  # Genstore posted it
    REQUEUED = "requeued"  # an operator sent a dead letter through again
    PULLED = "pulled"  # reconciliation fetched it from Genstore's REST API


@dataclass(frozen=True)
class RawDelivery:
    delivery_id: str
    topic: str | None
    shop: str
    body: bytes = field(repr=False)
    received_at: datetime
    triggered_at: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    origin: Origin = Origin.WEBHOOK

    @classmethod
    def from_request(
        cls, body: bytes, headers: Mapping[str, str], received_at: datetime
    ) -> RawDelivery:
        kept = kept_headers(headers)
        topic = kept.get(TOPIC_HEADER) or None
        # An over-long header still ends applied or dead-lettered, never unstorable; the
        # full value stays in the kept headers.
        shop = shop_key(kept.get(SHOP_HEADER)) or DEFAULT_SHOP
        return cls(
            delivery_id=delivery_id_for(kept, shop, topic, body),
            topic=topic[:MAX_KEY_LENGTH] if topic else None,
            shop=shop,
            body=body,
            received_at=received_at,
            triggered_at=kept.get(TRIGGERED_AT_HEADER) or None,
            headers=kept,
        )

    @property
    def key(self) -> DeliveryKey:
        """What identifies a delivery: two shops may send the same id."""
        return (self.shop, self.delivery_id)

    @functools.cached_property
    def body_sha256(self) -> str:
        """Tells a resend of this delivery (same body) from a conflict (another body)."""
        return hashlib.sha256(self.body).hexdigest()


def shop_key(shop: str | None) -> str | None:
    """A shop as the sink stores it (trimmed, lower case, cut to the column), or None for none
    or a blank one: the ingest and every lookup by shop read it the same way."""
    key = (shop or "").strip().lower()[:MAX_KEY_LENGTH]
    return key or None


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased headers worth keeping, signatures redacted (dead letters show headers).

    NUL becomes U+FFFD: gunicorn refuses it in headers but other servers pass it on, and
    PostgreSQL text cannot store it, which would leave a delivery unstorable even as a dead
    letter."""
    kept = {}
    for name, value in headers.items():
        key = name.lower()
        if key.startswith(KEPT_PREFIXES) or key in KEPT_HEADERS:
            kept[key] = REDACTED if key in SIGNATURE_HEADERS else value.replace("\x00", "\ufffd")
    return kept


def delivery_id_for(headers: Mapping[str, str], shop: str, topic: str | None,
                    body: bytes) -> str:
    """The sender's delivery id, else a digest of shop, topic and body, so a resent identical
    delivery keeps its identity and the same bytes from two shops are two deliveries."""
    for name in DELIVERY_ID_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            return value[:MAX_KEY_LENGTH]
    digest = hashlib.sha256(f"{shop}\n{topic or ''}\n".encode() + body)
    return digest.hexdigest()
