"""A fake Genstore REST API (202412) for the reconcile tests and the README's end-to-end run: a
real HTTP server in a thread on a free port, serving the refunds of several shops with cursor
paging and each shop's `shops/info` (zone and currency), checking each shop's access token
(401 on a wrong one), and told to answer the next requests with 429 and `Retry-After`, 500, or
to hang.

Shops live under a path prefix, so one server stands for every shop:
`GENSTORE_API_URL=http://127.0.0.1:PORT/shops/{shop}`.

    python -m tests.fake_genstore --port 8099   # serves example_shops() until Ctrl-C

`--write-events DIR` also writes each refund as a webhook body, DIR/SHOP/REFUND.json, for
`refund-sink send` to deliver a share of them.
"""

from __future__ import annotations

import argparse
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API = "/api/202412"


@dataclass
class FakeShop:
    token: str
    refunds: list[dict[str, Any]] = field(default_factory=list)  # Genstore's refund objects
    # `GET /shops/info`, answered as `{"data": {"ianaTimezone": ..., "currency": ...}}`
    iana_timezone: str = "UTC"
    currency: str = "USD"


@dataclass
class Failure:
    mode: str  # "429", "500" or "hang"
    times: int
    retry_after: float = 1
    hang_seconds: float = 5
    after: int = 0  # requests answered normally first


def refund(refund_id: str, order_id: str, status: str, price: str, update_time: str,
           **extra: Any) -> dict[str, Any]:
    """A refund object as the webhook's `refund` carries it (assumption 2 of genstore_api)."""
    return {"id": refund_id, "orderId": order_id, "status": status, "refundPrice": price,
            "createTime": update_time, "updateTime": update_time, **extra}


def example_shops() -> dict[str, FakeShop]:
    """The README's data set: two shops, refunds over a few orders, some already refunded."""
    one = [refund(f"70{n:02d}", f"90{n // 2:02d}", "refunded" if n % 3 == 0 else "in_progress",
                  f"{10 + n}.00", f"2025-03-01T10:{n:02d}:00Z") for n in range(12)]
    two = [refund(f"80{n:02d}", f"95{n:02d}", "in_progress", "5.50", f"2025-03-02T09:{n:02d}:00Z")
           for n in range(3)]
    return {"shop-one.example": FakeShop("token-one", one),
            "shop-two.example": FakeShop("token-two", two)}


class FakeGenstore:
    def __init__(self, shops: dict[str, FakeShop], *, port: int = 0) -> None:
        self.shops = shops
        self.failures: list[Failure] = []
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []  # shop, path, query
        self.tokens_seen: list[str] = []
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, int]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True  # a hanging answer never holds up the shutdown
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The GENSTORE_API_URL that reaches this server."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/shops/{{shop}}"

    def start(self) -> FakeGenstore:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, mode: str, times: int = 1, **options: float) -> None:
        """The next `times` requests (of any shop) answer `mode`: "429", "500" or "hang"
        (after `after` requests answered normally, if given)."""
        with self._lock:
            self.failures.append(Failure(mode, times, **options))  # type: ignore[arg-type]

    def put(self, shop: str, new: dict[str, Any]) -> None:
        """Add a refund, or replace the one with its id."""
        refunds = self.shops[shop].refunds
        refunds[:] = [r for r in refunds if r["id"] != new["id"]] + [new]

    def _take_failure(self) -> Failure | None:
        with self._lock:
            if not self.failures:
                return None
            failure = self.failures[0]
            if failure.after > 0:
                failure.after -= 1
                return None
            failure.times -= 1
            if failure.times <= 0:
                self.failures.pop(0)
            return failure

    def answer(self, path: str, query: dict[str, list[str]],
               token: str | None) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON body) for a GET."""
        parts = path.split("/")  # "", "shops", shop, "api", "202412", ...
        if len(parts) < 5 or parts[1] != "shops" or "/".join(["", *parts[3:5]]) != API:
            return 404, {}, {"errors": "not found"}
        shop, route = unquote(parts[2]), parts[5:]
        with self._lock:
            self.requests.append((shop, "/" + "/".join(route), query))
            self.tokens_seen.append(token or "")
        failure = self._take_failure()
        if failure is not None:
            if failure.mode == "hang":
                time.sleep(failure.hang_seconds)
            elif failure.mode == "429":
                return 429, {"Retry-After": f"{failure.retry_after:g}"}, {"errors": "throttled"}
            else:
                return int(failure.mode), {}, {"errors": "internal error"}
        known = self.shops.get(shop)
        if known is None or token != known.token:
            return 401, {}, {"errors": "[API] Invalid API key or access token"}
        if "pageToken" in query:
            return self._next_page(path, query["pageToken"][0])
        if route == ["shops", "info"]:
            return 200, {}, {"data": {"ianaTimezone": known.iana_timezone,
                                      "currency": known.currency}}
        items, key = self._select(known, route, query)
        if items is None:
            return 404, {}, {"errors": "not found"}
        limit = min(int(query.get("limit", ["50"])[0]), 250)
        return self._page(path, key, items, 0, limit)

    def _select(self, shop: FakeShop, route: list[str],
                query: dict[str, list[str]]) -> tuple[list[dict[str, Any]] | None, str]:
        refunds = sorted(shop.refunds, key=lambda r: r["id"])
        if route == ["refunds"]:
            ids = set(",".join(query.get("ids", [])).split(",")) - {""}
            order = query.get("orderId", [None])[0]
            return [r for r in refunds if (not ids or r["id"] in ids)
                    and (order is None or r["orderId"] == order)], "refunds"
        if len(route) == 3 and route[0] == "orders" and route[2] == "refunds":
            return [r for r in refunds if r["orderId"] == unquote(route[1])], "refunds"
        if route == ["orders"]:
            low, high = (_time(query.get(name)) for name in ("updatedAtMin", "updatedAtMax"))
            updated: dict[str, datetime] = {}
            for r in refunds:
                at = _time([r["updateTime"]])
                assert at is not None
                updated[r["orderId"]] = max(updated.get(r["orderId"], at), at)
            return [{"orderId": order, "updatedAt": at.isoformat()}
                    for order, at in sorted(updated.items())
                    if (low is None or at >= low) and (high is None or at <= high)], "orders"
        return None, ""

    def _page(self, path: str, key: str, items: list[dict[str, Any]], offset: int,
              limit: int) -> tuple[int, dict[str, str], Any]:
        headers = {}
        if offset + limit < len(items):
            cursor = uuid.uuid4().hex
            with self._lock:
                self._cursors[cursor] = (items, offset + limit, limit)
            host = self._server.server_address
            headers["Link"] = (f'<http://{host[0]}:{host[1]}{path}?pageToken={cursor}>; '
                               'rel="next"')
        return 200, headers, {key: copy.deepcopy(items[offset:offset + limit])}

    def _next_page(self, path: str, cursor: str) -> tuple[int, dict[str, str], Any]:
        with self._lock:
            found = self._cursors.get(cursor)
        if found is None:
            return 400, {}, {"errors": "unknown pageToken"}
        items, offset, limit = found
        return self._page(path, "orders" if path.endswith("/orders") else "refunds", items,
                          offset, limit)


def _time(values: list[str] | None) -> datetime | None:
    return datetime.fromisoformat(values[0].replace("Z", "+00:00")) if values else None


def _handler(fake: FakeGenstore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            split = urlsplit(self.path)
            status, headers, body = fake.answer(split.path, parse_qs(split.query),
                                                self.headers.get("X-Genstore-Access-Token"))
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Type": "application/json"}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a hang)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the tests read `fake.requests`

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--write-events", type=Path, metavar="DIR",
                        help="write each refund as a webhook body, DIR/SHOP/REFUND.json")
    args = parser.parse_args()
    fake = FakeGenstore(example_shops(), port=args.port).start()
    if args.write_events:
        for domain, shop in fake.shops.items():
            (args.write_events / domain).mkdir(parents=True, exist_ok=True)
            for found in shop.refunds:
                path = args.write_events / domain / f"{found['id']}.json"
                path.write_text(json.dumps({"refund": found}, indent=2) + "\n")
    print(f"fake Genstore at GENSTORE_API_URL={fake.url}")
    for domain, shop in fake.shops.items():
        print(f"  {domain}: token {shop.token!r}, {len(shop.refunds)} refunds")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
