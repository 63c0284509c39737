"""Deliveries to send: refunds with a few messages each, every message of a refund at its own
time (as tests/integration/test_workers.py builds them), so the oracle's order is total."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tests.payloads import camel_event


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    refund_id: str
    payload: dict[str, Any]

    @property
    def body(self) -> bytes:
        return json.dumps(self.payload, ensure_ascii=False).encode("utf-8")


def messages(count: int, rng: random.Random, prefix: str, per_refund: int = 5,
             first: int = 1_000_000) -> list[Delivery]:
    """`count` distinct deliveries over count/per_refund refunds (ids from `first` on, so two
    batches can hold different refunds), in time order per refund."""
    refunds = max(1, count // per_refund)
    minutes: dict[str, int] = defaultdict(int)
    made = []
    for number in range(count):
        refund_id = str(first + number % refunds)
        minute = minutes[refund_id]
        minutes[refund_id] += 1
        payload = camel_event(
            refund_id=refund_id, order_id=f"9{refund_id}",
            status=rng.choice(["in_progress", "fund_change", "refunded"]),
            price=f"{rng.randint(1, 99999) / 100:.2f}",
            update_time=f"2025-03-01T{minute // 60:02d}:{minute % 60:02d}:00Z",
            note=rng.choice([None, "n1", "退款"]),
        )  # fmt: skip
        made.append(Delivery(f"{prefix}-{number}", refund_id, payload))
    return made


def shuffled(deliveries: list[Delivery], rng: random.Random) -> list[Delivery]:
    mixed = list(deliveries)
    rng.shuffle(mixed)
    return mixed


def newest_first(deliveries: list[Delivery]) -> list[Delivery]:
    """Refunds interleaved, each refund's messages from the latest time to the earliest."""
    by_refund: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in deliveries:
        by_refund[delivery.refund_id].append(delivery)
    for group in by_refund.values():
        group.sort(key=lambda d: d.payload["refund"]["updateTime"], reverse=True)
    ordered = []
    depth = max(len(group) for group in by_refund.values())
    for position in range(depth):
        ordered += [group[position] for group in by_refund.values() if position < len(group)]
    return ordered


def tripled(deliveries: list[Delivery], rng: random.Random, window: int = 8) -> list[Delivery]:
    """Every delivery three times under its own id, the copies shuffled among the copies of
    a few neighbours so they reach the ingest (and the workers) at the same moment."""
    order = shuffled(deliveries, rng)
    sent: list[Delivery] = []
    for start in range(0, len(order), window):
        batch = [d for d in order[start:start + window] for _ in range(3)]
        rng.shuffle(batch)
        sent += batch
    return sent


def poison(refund_id: str, delivery_id: str) -> Delivery:
    payload = camel_event(refund_id=refund_id, order_id=f"9{refund_id}", note="POISON")
    return Delivery(delivery_id, refund_id, payload)
