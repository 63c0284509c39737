"""A delivery as the queue holds it: a kombu message carrying one Celery task (protocol 2)
whose single argument is `RawDelivery.to_wire()`. Read back by the sweeper, the queue-age
gauge and the test helpers, so one decoder serves them all."""

from __future__ import annotations

import base64
import json

from refunds.delivery import RawDelivery


def delivery_of(message: str | bytes) -> RawDelivery:
    """The delivery inside a queued kombu message (Celery's protocol 2: args, kwargs, embed);
    ValueError for anything else."""
    try:
        envelope = json.loads(message)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, _kwargs, _embed = json.loads(body)
        return RawDelivery.from_wire(args[0])
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(f"not a queued delivery: {error!r}") from None
