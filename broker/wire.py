"""The delivery's wire format: plain JSON (the queue and the spool never hold pickles), the
single argument of the task message. A queued kombu message carrying one Celery task
(protocol 2) is read back by the sweeper, the queue-age gauge and the test helpers, so one
decoder serves them all."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from refunds.delivery import Origin, RawDelivery


class MalformedDelivery(ValueError):
    """A queued or spooled message that is not a delivery this sink wrote."""


def to_wire(delivery: RawDelivery) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "topic": delivery.topic,
        "shop": delivery.shop,
        "body": base64.b64encode(delivery.body).decode("ascii"),
        "received_at": delivery.received_at.isoformat(),
        "triggered_at": delivery.triggered_at,
        "headers": dict(delivery.headers),
        "origin": delivery.origin.value,
    }


def from_wire(wire: Mapping[str, Any]) -> RawDelivery:
    """The delivery, or MalformedDelivery."""
    try:
        received_at = datetime.fromisoformat(wire["received_at"])
        return RawDelivery(
            delivery_id=str(wire["delivery_id"]),
            topic=wire.get("topic"),
            shop=str(wire["shop"]),
            body=base64.b64decode(wire["body"], validate=True),
            received_at=received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC),
            triggered_at=wire.get("triggered_at"),
            headers=dict(wire.get("headers") or {}),
            # copies queued before origins existed came from webhooks
            origin=Origin(wire.get("origin") or Origin.WEBHOOK),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedDelivery(f"not a queued delivery: {exc!r}") from None


def delivery_of(message: str | bytes) -> RawDelivery:
    """The delivery inside a queued kombu message (Celery's protocol 2: args, kwargs, embed);
    ValueError for anything else."""
    try:
        envelope = json.loads(message)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        return from_wire(args[0])
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(f"not a queued delivery: {error!r}") from None
