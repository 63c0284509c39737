"""The load generator: threads, each with its own keep-alive HTTP connection, sending signed
deliveries as Genstore does (retrying a failure up to 8 attempts) and recording every answer."""

from __future__ import annotations

import http.client
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.signing import genstore_headers

from .traffic import Delivery

GENSTORE_ATTEMPTS = 8  # Genstore gives up after 8 consecutive failures
CONNECTION_ERROR = 0  # recorded as the status of a request that got no HTTP answer


@dataclass(frozen=True)
class Attempt:
    delivery_id: str
    status: int
    at: float  # time.monotonic() when the answer came


class Load:
    def __init__(self, url: str, secret: str, threads: int = 16, retry_delay: float = 1.0):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.secret, self.retry_delay = secret, retry_delay
        self.work: queue.Queue[Delivery | None] = queue.Queue(maxsize=threads * 4)
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def send(self, deliveries: list[Delivery], rate: float | None = None,
             until: float | None = None) -> int:
        """Queue deliveries, at `rate` per second if given, stopping at monotonic time `until`.
        Returns how many were queued."""
        started = time.monotonic()
        for number, delivery in enumerate(deliveries):
            if until is not None and time.monotonic() >= until:
                return number
            if rate:
                pause = started + number / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            self.work.put(delivery)
        return len(deliveries)

    def close(self) -> None:
        """Wait for every queued delivery to be answered (or given up), then stop."""
        for _ in self._threads:
            self.work.put(None)
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            while (delivery := self.work.get()) is not None:
                for _ in range(GENSTORE_ATTEMPTS):
                    status = self._post(connection, delivery)
                    with self._lock:
                        self.attempts.append(Attempt(delivery.delivery_id, status,
                                                     time.monotonic()))
                    if 200 <= status < 300:
                        break
                    time.sleep(self.retry_delay)
        finally:
            connection.close()

    def _post(self, connection: http.client.HTTPConnection, delivery: Delivery) -> int:
        body = delivery.body
        headers = genstore_headers(body, self.secret,
                                   **{"X-Genstore-Webhook-Id": delivery.delivery_id})
        try:
            connection.request("POST", "/webhooks/genstore", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.will_close:
                connection.close()
            return response.status
        except (OSError, http.client.HTTPException):
            connection.close()
            return CONNECTION_ERROR

    def accepted(self) -> set[str]:
        return {a.delivery_id for a in self.attempts if 200 <= a.status < 300}

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> Counter[int]:
        return Counter(a.status for a in self.attempts if since <= a.at <= until)
