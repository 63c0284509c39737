"""Signed, seed-sized deliveries: Genstore's own example event with a distinct refund (two
messages per refund, the second later) and a distinct delivery id per delivery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "genstore-refund-event.json"
PATH = "/webhooks/genstore"
TOPIC = "refunds/create"
BASE_TIME = datetime(2025, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Signed:
    delivery_id: str
    body: bytes
    headers: dict[str, str]

    def request_bytes(self, host: str) -> bytes:
        """The whole HTTP/1.1 request, ready to write on a socket."""
        lines = [f"POST {PATH} HTTP/1.1", f"Host: {host}",
                 f"Content-Length: {len(self.body)}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


def _template() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    return loaded


def body_for(index: int, run: str, template: dict[str, Any] | None = None) -> bytes:
    """Delivery `index` of a run: refund `index // 2`, updated one minute later on odd ones."""
    event = json.loads(json.dumps(template or _template()))
    refund = event["refund"]
    refund["id"] = f"{run}{index // 2}"
    refund["orderId"] = f"9{index // 2}"
    refund["updateTime"] = (BASE_TIME + timedelta(minutes=index % 2)).strftime(
        "%Y-%m-%d %H:%M:%S")
    refund["refundPrice"] = f"{10 + index % 2}.00"
    return json.dumps(event, ensure_ascii=False, indent=2).encode("utf-8")


def sign(body: bytes, secret: str, delivery_id: str) -> Signed:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-Genstore-Topic": TOPIC,
        "X-Genstore-Shop-Domain": "bench.example.com",
        "X-Genstore-Webhook-Id": delivery_id,
        "X-Genstore-Hmac-Sha256": base64.b64encode(digest).decode("ascii"),
    }
    return Signed(delivery_id, body, headers)


def deliveries(count: int, run: str, secret: str, start: int = 0) -> Iterator[Signed]:
    template = _template()
    for index in range(start, start + count):
        yield sign(body_for(index, run, template), secret, f"{run}-{index}")
