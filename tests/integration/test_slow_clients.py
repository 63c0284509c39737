"""Slow clients: connections that send their headers and one byte of the body, then nothing,
must not hold up the deliveries that arrive meanwhile. Anyone on the internet can open them,
no signature needed, and Genstore stops sending after 8 failed deliveries. Against the ingest
run bare, as `refund-sink ingest` runs it (real gunicorn, its default flags), and through
the compose proxy (deploy/nginx.conf run by the local nginx)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from backing_services import stop
from conftest import SECRET, make_settings
from payloads import camel_event, to_body
from processes import answers, ingest, wait_for
from queued_messages import queued
from signing import genstore_headers

from refund_sink.servers import free_port
from refunds.settings import Settings

pytestmark = pytest.mark.integration

SLOW_CONNECTIONS = 50
DELIVERIES = 40
SPACING = 0.1  # seconds between deliveries: 4 s of traffic while the slow ones hang
ANSWER_WITHIN = 1.0
NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
SLOW_REQUEST = (b"POST /webhooks/genstore HTTP/1.1\r\nHost: sink\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")


@contextmanager
def slow_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections holding a request whose body never completes (1 of 100 bytes)."""
    with ExitStack() as opened:
        held = []
        for _ in range(count):
            sock = opened.enter_context(socket.create_connection(("127.0.0.1", port), 5))
            sock.sendall(SLOW_REQUEST)
            held.append(sock)
        yield held


@contextmanager
def compose_proxy(ingest_port: int, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """deploy/nginx.conf as compose runs it, by the local nginx: its two ports and the ingest's
    address swapped for local ones, its /tmp (a tmpfs there) under tmp_path. Yields the public
    (webhook) port and the API port."""
    nginx = shutil.which("nginx", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    public, api = free_port(), free_port()
    text = NGINX_CONF.read_text()
    swaps = {"listen 8080;": f"listen 127.0.0.1:{public};",
             "listen 8081;": f"listen 127.0.0.1:{api};",
             "http://ingest:8080;": f"http://127.0.0.1:{ingest_port};", " /tmp/": f" {tmp_path}/"}
    for old, new in swaps.items():
        assert old in text, old
        text = text.replace(old, new)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    with (tmp_path / "nginx.log").open("wb") as out:
        process = subprocess.Popen(
            [nginx, "-e", "stderr", "-p", f"{tmp_path}/", "-c", str(conf), "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: answers(api), 10, "nginx not serving")
        yield public, api
    finally:
        stop(process)


def deliver(port: int, number: int, body: bytes | None = None) -> tuple[int, float]:
    """POST one signed delivery on a fresh connection: (status, seconds), status 0 when no
    answer came within twice the allowed time."""
    body = to_body(camel_event(refund_id=str(9000 + number))) if body is None else body
    headers = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": f"slow-{number}"})
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2 * ANSWER_WITHIN)
    try:
        connection.request("POST", "/webhooks/genstore", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except OSError:
        return 0, time.monotonic() - started
    finally:
        connection.close()


def paced(port: int, start: float, number: int) -> tuple[int, float]:
    time.sleep(max(0.0, start + number * SPACING - time.monotonic()))
    return deliver(port, number)


def deliveries_while_slow_clients_hang(port: int) -> list[tuple[int, int, float]]:
    """Deliveries paced over 4 s while SLOW_CONNECTIONS hang: those not answered 202 within
    ANSWER_WITHIN, as (number, status, seconds)."""
    with slow_connections(port, SLOW_CONNECTIONS):
        time.sleep(0.5)  # the server has taken them in
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda n: paced(port, start, n), range(DELIVERIES)))
        # the slow ones are still held open here (not refused), until the block ends
    return [(n, status, round(took, 2)) for n, (status, took) in enumerate(answers)
            if status != 202 or took > ANSWER_WITHIN]


@pytest.fixture
def ingest_settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    # no database needed to acknowledge
    return make_settings(f"sqlite:///{tmp_path / 'unused.db'}", redis_url, key_prefix)


def test_slow_connections_do_not_hold_up_deliveries(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    # given the ingest as `refund-sink ingest` runs it, bare
    with ingest(ingest_settings, tmp_path / "ingest.log") as port:
        # when deliveries arrive while 50 slow connections hang
        late = deliveries_while_slow_clients_hang(port)
        # then every one is accepted within the time allowed
        assert late == [], f"{len(late)} of {DELIVERIES} not answered 202 within 1 s: {late}"
        assert len(queued(ingest_settings)) == DELIVERIES
        assert answers(port)


def test_the_compose_proxy_buffers_slow_clients_and_passes_only_the_webhook(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    # given the ingest behind the compose proxy
    with ingest(ingest_settings, tmp_path / "ingest.log") as ingest_port, \
            compose_proxy(ingest_port, tmp_path) as (public, api):
        # when deliveries arrive through it while 50 slow connections hang on it
        late = deliveries_while_slow_clients_hang(public)
        # then every one is accepted within the time allowed
        assert late == [], f"{len(late)} of {DELIVERIES} not answered 202 within 1 s: {late}"
        # and a body of exactly REFUND_SINK_MAX_BODY_BYTES passes, one byte more does not
        limit = ingest_settings.max_body_bytes
        assert deliver(public, DELIVERIES, b"x" * limit)[0] == 202
        assert _answer(public, "POST", "/webhooks/genstore", length=limit + 1) == (
            413, {"error": "body_too_large"})
        assert len(queued(ingest_settings)) == DELIVERIES + 1
        # and the public port serves the webhook alone; the API port serves the rest
        assert _answer(public, "GET", "/webhooks/genstore")[0] == 405
        assert _answer(public, "GET", "/healthz")[0] == 404
        assert _answer(public, "GET", "/refunds/1")[0] == 404
        assert _answer(api, "GET", "/healthz")[0] == 200
        assert _answer(api, "GET", "/refunds/1")[0] == 401  # the ingest's own answer


def _answer(port: int, method: str, path: str, length: int = 0) -> tuple[int, object]:
    """Status and JSON body; `length` is announced in Content-Length and never sent."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest(method, path)
        if length:
            connection.putheader("Content-Length", str(length))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()
