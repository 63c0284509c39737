"""A small client over `requests` for the refund and shop-info endpoints of Genstore's 202412 REST
API
(assumptions where the docs are silent: the package docstring).

Every call has a connect and a read timeout. Connection errors, timeouts, 429 (after its
`Retry-After`) and 5xx are retried with exponential backoff and full jitter, at most
`max_attempts` times per request; 401/403 fail at once. A `Budget` caps the requests of one
client (one shop, one run) and spaces them, so a reconcile never hammers a shop. The access
token is sent in a header and is never in a repr, a log line or an exception's text."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import requests

API = "/api/202412"
TOKEN_HEADER = "X-Genstore-Access-Token"  # noqa: S105 - a header name
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
log = logging.getLogger("refund_sink.genstore_api")


class GenstoreError(Exception):
    """A request that did not succeed; the text names the shop and the path, never the token."""


class Unauthorized(GenstoreError):
    """401 or 403: the token is wrong, revoked or lacks a scope. Not retried."""


class Unavailable(GenstoreError):
    """Timeouts, connection errors, 429 or 5xx on every attempt."""


class BudgetExhausted(GenstoreError):
    """The run used the requests its budget allows for this shop."""


class BadResponse(GenstoreError):
    """Another 4xx, or a body that is not the JSON expected."""


@dataclass(frozen=True)
class Budget:
    """At most `max_requests` requests (retries included) per client, `min_interval` seconds
    apart."""

    max_requests: int = 1000
    min_interval: float = 0.1


@dataclass(frozen=True)
class Retries:
    max_attempts: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 30.0  # also caps a Retry-After


@dataclass(frozen=True)
class ShopInfo:
    iana_timezone: str | None
    currency: str | None


class GenstoreClient:
    def __init__(self, shop: str, access_token: str, *, base_url: str,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 retries: Retries = Retries(), budget: Budget = Budget(),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.shop = shop
        self.base_url = base_url.replace("{shop}", shop).rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.retries, self.budget, self._sleep = retries, budget, sleep
        self.requests_made = 0
        self._last_request: float | None = None
        self._http = requests.Session()
        self._http.headers[TOKEN_HEADER] = access_token
        self._http.headers["Accept"] = "application/json"

    def __repr__(self) -> str:
        return f"GenstoreClient(shop={self.shop!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def order_refunds(self, order_id: str, *, limit: int = DEFAULT_LIMIT) -> list[dict[str, Any]]:
        """Every refund of the order, every page read. GenstoreError on failure."""
        path = f"{API}/orders/{quote(order_id, safe='')}/refunds"
        return [refund for page in self._pages(path, {"limit": _limit(limit)})
                for refund in _items(page, "refunds", "refund")]

    def refunds(self, *, ids: list[str] | None = None,
                order_id: str | None = None) -> list[dict[str, Any]]:
        """Refund details by ids, or an order's, every page read."""
        params: dict[str, str | int] = {}
        if ids:
            params["ids"] = ",".join(ids)
        if order_id:
            params["orderId"] = order_id
        return [refund for page in self._pages(f"{API}/refunds", params)
                for refund in _items(page, "refunds", "refund")]

    def shop_info(self) -> ShopInfo:
        """The shop's zone and currency (`GET /shops/info`); a field the answer lacks is None.
        GenstoreError on failure, BadResponse when the answer is not a shop object."""
        path = f"{API}/shops/info"
        response = self._get(self.base_url + path, None, path)
        try:
            page = response.json()
        except ValueError:
            raise BadResponse(f"{self.shop}: {path}: the answer is not JSON") from None
        shop = page.get("data", page) if isinstance(page, dict) else None
        shop = shop.get("shop", shop) if isinstance(shop, dict) else None
        if not isinstance(shop, dict):
            raise BadResponse(f"{self.shop}: {path}: expected a shop object in the answer")
        return ShopInfo(_text(shop.get("ianaTimezone")),
                        _text(shop.get("currency") or shop.get("currencyCode")))

    def order_ids(self, *, updated_at_min: datetime | None = None,
                  updated_at_max: datetime | None = None,
                  limit: int = DEFAULT_LIMIT) -> list[str]:
        """The ids of the orders the order list returns for the window, every page read."""
        params: dict[str, str | int] = {"limit": _limit(limit)}
        if updated_at_min is not None:
            params["updatedAtMin"] = updated_at_min.astimezone(UTC).isoformat()
        if updated_at_max is not None:
            params["updatedAtMax"] = updated_at_max.astimezone(UTC).isoformat()
        ids = []
        for page in self._pages(f"{API}/orders", params):
            for order in _items(page, "orders", "order"):
                order_id = order.get("orderId") or order.get("id")
                if order_id is not None:
                    ids.append(str(order_id))
        return ids

    def _pages(self, path: str, params: Mapping[str, str | int]) -> Iterator[Any]:
        """Each page's JSON: the first with `params`, the next ones at the URL of the `Link`
        header's `rel=next` (its `pageToken` alone)."""
        url: str | None = self.base_url + path
        page_params: Mapping[str, str | int] | None = params
        while url is not None:
            response = self._get(url, page_params, path)
            try:
                yield response.json()
            except ValueError:
                raise BadResponse(f"{self.shop}: {path}: the answer is not JSON") from None
            url = response.links.get("next", {}).get("url")
            page_params = None

    def _get(self, url: str, params: Mapping[str, str | int] | None,
             path: str) -> requests.Response:
        for attempt in range(1, self.retries.max_attempts + 1):
            self._spend(path)
            wait: float | None = None
            try:
                response = self._http.get(url, params=params, timeout=self.timeout,
                                          allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as error:
                problem = type(error).__name__
            else:
                if response.status_code < 300:
                    return response
                if response.status_code in (401, 403):
                    raise Unauthorized(f"{self.shop}: {path}: HTTP {response.status_code}: the "
                                       "access token is wrong or lacks a scope")
                if response.status_code != 429 and response.status_code < 500:
                    raise BadResponse(f"{self.shop}: {path}: HTTP {response.status_code}")
                problem = f"HTTP {response.status_code}"
                if response.status_code == 429:
                    wait = _retry_after(response.headers.get("Retry-After"))
            if attempt == self.retries.max_attempts:
                raise Unavailable(f"{self.shop}: {path}: {problem} on each of {attempt} attempts")
            delay = self._backoff(attempt) if wait is None else min(wait, self.retries.max_seconds)
            log.warning("genstore request retried: shop %s, %s: %s (attempt %d of %d, next in "
                        "%.2fs)", self.shop, path, problem, attempt, self.retries.max_attempts,
                        delay)
            self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, attempt: int) -> float:
        """Full jitter: anywhere up to base * 2^(attempt-1), capped."""
        ceiling = min(self.retries.max_seconds, self.retries.base_seconds * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret

    def _spend(self, path: str) -> None:
        if self.requests_made >= self.budget.max_requests:
            raise BudgetExhausted(f"{self.shop}: {path}: the run's budget of "
                                  f"{self.budget.max_requests} requests is used up")
        if self._last_request is not None:
            spacing = self.budget.min_interval - (time.monotonic() - self._last_request)
            if spacing > 0:
                self._sleep(spacing)
        self.requests_made += 1
        self._last_request = time.monotonic()


def _limit(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


def _items(page: Any, plural: str, singular: str) -> list[dict[str, Any]]:
    """The objects of a page: `{plural: [...]}`, or `{singular: {...}}` as a list of one."""
    if isinstance(page, dict):
        if isinstance(page.get(plural), list):
            return [item for item in page[plural] if isinstance(item, dict)]
        if isinstance(page.get(singular), dict):
            return [page[singular]]
    raise BadResponse(f"expected {{{plural!r}: [...]}} in the answer")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None
