"""The real stack the browser tests drive, and the browser.

The stack is what `refund-sink run` starts: gunicorn serving `ingest:create_app()` (through
`refund-sink ingest`), a Celery worker, PostgreSQL and Redis. Its data comes in as Genstore
sends it, signed, through the webhook, and the worker applies it: refunds (one with a stale
message, two over the amount_over threshold, one whose note is an XSS probe), and three dead
letters (invalid JSON, an invalid price, and a delivery conflict that applies on requeue).

The browser is the distribution's Chromium (`apt-get install chromium chromium-driver`),
driven by Playwright with `executable_path`: Playwright's own browser builds are never
downloaded. Where Chromium is missing the tests fail, saying how to install it; they never
skip, so a CI without the browser cannot pass them by not running them."""

from __future__ import annotations

import http.client
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from backing_services import delete_keys, scratch_database
from conftest import ROOT, SECRET, make_settings
from payloads import camel_event, to_body
from playwright.sync_api import Browser, Dialog, Page, Playwright, sync_playwright
from processes import environment, ingest, wait_for, workers
from signing import genstore_headers
from sqlalchemy import func, select

from refund_sink.operations import upgrade_database
from refunds import tokens
from refunds.db import session_factory
from refunds.models import DeadLetter, RefundEvent
from refunds.settings import Settings

INSTALL = "apt-get install chromium chromium-driver"
# Without the background-networking flags Chromium calls home at start-up, and on a closed
# network those connections are refused; a fresh profile per launch is Playwright's default.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Set (to docs/desk) to write every page's screenshots at both sizes; unset in CI, so a test
# run leaves the work tree as it was.
SCREENSHOTS = os.environ.get("REFUND_SINK_SCREENSHOTS", "")
EMAIL = "dana.buyer@example.com"
LOOKS_LIKE_A_TOKEN = re.compile(re.escape(tokens.TOKEN_PREFIX) + r"[A-Za-z0-9_-]{20,}")
NOTE_PROBE = '<script>alert("note")</script><img src=x onerror=alert(2)>'


@dataclass
class Stack:
    """The running stack, the tokens to sign in with, and what the data holds."""

    base: str  # http://127.0.0.1:PORT
    settings: Settings  # as the test process reaches the stores
    ingest_settings: Settings  # as the ingest process reads its environment
    write_token: str
    read_token: str
    letters: dict[str, int] = field(default_factory=dict)  # dead letter id by reason

    def url(self, path: str) -> str:
        return self.base + path


def chromium() -> str:
    """The distribution's Chromium, or a failure saying how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed; the console's browser tests need Debian's "
                    f"packages: `{INSTALL}`", pytrace=False)
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@dataclass
class Desk:
    """One browser context (its own cookies) on the stack: signing in, and looking at a page
    as a person would, which also checks that the page shows no token."""

    page: Page
    stack: Stack
    dialogs: list[str] = field(default_factory=list)  # every alert/confirm a page opened

    def open(self, path: str) -> Page:
        self.page.goto(self.stack.url(path))
        self.no_token(path)
        return self.page

    def no_token(self, name: str) -> None:
        html = self.page.content()
        for token in (self.stack.write_token, self.stack.read_token):
            assert token not in html, f"{name} shows a token"
        assert not LOOKS_LIKE_A_TOKEN.search(html), f"{name} shows something like a token"

    def sign_in(self, token: str) -> None:
        self.open("/desk/login")
        self.page.fill("#token", token)
        self.page.get_by_test_id("login-submit").click()
        self.page.wait_for_url(self.stack.url("/desk/"))

    def look(self, name: str) -> None:
        """The page as it stands: no token anywhere in it, nothing wider than a phone's
        screen at 390x844 (a table too wide scrolls in its own box), and its screenshots at
        desktop and phone size when REFUND_SINK_SCREENSHOTS names a folder."""
        self.no_token(name)
        folder = ROOT / SCREENSHOTS if SCREENSHOTS else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        for size, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            self.page.set_viewport_size(viewport)
            # the resize reaches the page a moment later (on a loaded machine, after the
            # first measure): measure once the page sees its new width and media queries
            self.page.wait_for_function(
                "w => window.innerWidth === w && matchMedia(`(width: ${w}px)`).matches",
                arg=viewport["width"])
            width = self.page.evaluate("document.documentElement.scrollWidth")
            assert width <= viewport["width"], f"{name} is {width} px wide at {size} size"
            if folder is not None:
                self.page.screenshot(path=folder / f"{name}-{size}.png", full_page=True,
                                     animations="disabled")
        self.page.set_viewport_size(DESKTOP)


@pytest.fixture
def desk(browser: Browser, stack: Stack) -> Iterator[Desk]:
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    found = Desk(page, stack)

    def record(dialog: Dialog) -> None:
        found.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    yield found
    context.close()
    assert found.dialogs == [], f"a page opened a dialog: {found.dialogs}"


@pytest.fixture
def page(desk: Desk) -> Page:
    return desk.page


# --- the stack --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack_settings(postgres_admin_url: str, redis_url: str, run_id: str) -> Iterator[Settings]:
    """A database and key prefix of the module's own: its processes outlive single tests."""
    prefix = f"refund-sink-test-{run_id}-browser:"
    with scratch_database(postgres_admin_url) as url:
        upgrade_database(Settings(database_url=url))
        yield make_settings(url, redis_url, prefix, max_retries=2)
    delete_keys(redis_url, prefix)


@pytest.fixture(scope="module")
def stack(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("desk-stack")
    settings = stack_settings
    with workers(settings, folder, count=1, concurrency=1), \
            ingest(settings, folder / "ingest.log", workers=2) as port:
        with session_factory(settings).begin() as session:
            write = tokens.create(["read_refunds", "write_refunds"], name="Dana (after-sales)",
                                  session=session)
            read = tokens.create(["read_refunds"], name="Ravi (finance)", session=session)
        found = Stack(f"http://127.0.0.1:{port}", settings,
                      Settings.from_env(environment(settings)), write, read)
        found.letters = given_the_data(found, port)
        yield found


def given_the_data(stack: Stack, port: int) -> dict[str, int]:
    """Refunds of the last days, sent and applied as in production; returns the dead letters'
    ids by reason."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    settings = stack.settings
    send = Sender(port)
    first = now - timedelta(hours=26)  # refund 7001: refunded, then a fund change, then stale
    customer = {"id": "42", "email": EMAIL, "phone": "+1 555 0100"}

    def refund(refund_id: str, order_id: str, status: str, price: str, at: datetime,
               created: datetime, **extra: Any) -> dict[str, Any]:
        return camel_event(refund_id=refund_id, order_id=order_id, status=status, price=price,
                           update_time=_iso(at), create_time=_iso(created), sku="SKU-1",
                           customer=customer, **extra)

    send(refund("7001", "9001", "refunded", "1500.00", first + timedelta(minutes=9), first,
                currency="USD", customerId="42", note="Box arrived crushed"), "d-7001-refunded")
    send(refund("7001", "9001", "fund_change", "1450.00", first + timedelta(minutes=20), first,
                currency="USD", customerId="42", note="Box arrived crushed"), "d-7001-fund")
    send(camel_event(refund_id="8001", order_id="9801", price="12.00"), "d-dup")
    wait_for(lambda: _events(settings, "7001") == 2 and _events(settings, "8001") == 1, 30,
             "the first deliveries were not applied")
    # older than what 7001 already holds: recorded, stale
    send(refund("7001", "9001", "in_progress", "1500.00", first, first, currency="USD",
                customerId="42"), "d-7001-first")
    # another body under an applied delivery id: a delivery_conflict, applied on requeue
    send(camel_event(refund_id="8002", order_id="9802", price="13.00"), "d-dup")
    send(refund("7002", "9001", "in_progress", "80.00", now - timedelta(hours=30),
                now - timedelta(hours=30), currency="USD", customerId="43"), "d-7002")
    send(refund("7003", "9002", "refunded", "1245.50", now - timedelta(days=2, hours=-1),
                now - timedelta(days=2), currency="EUR", customerId="44"), "d-7003")
    send(refund("7004", "9003", "refunded", "120.00", now - timedelta(hours=1),
                now - timedelta(hours=2), currency="USD", customerId="42", note=NOTE_PROBE),
         "d-7004")
    send(refund("7005", "9004", "in_progress", "60.00", now - timedelta(hours=3),
                now - timedelta(hours=3), currency="USD", customerId="45"), "d-7005")
    send(b'{"refund": {"id": "7100", ', "d-broken-json")
    send(camel_event(refund_id="7101", price="lots"), "d-bad-price")
    wait_for(lambda: _events(settings, "7001") == 3 and _letters(settings).keys() == {
        "delivery_conflict", "invalid_json", "invalid_payload"} and all(
            _events(settings, refund_id) == 1 for refund_id in ("7002", "7003", "7004", "7005")),
        30, "the deliveries were not all applied")
    return _letters(settings)


class Sender:
    """POSTs deliveries to the ingest signed as Genstore signs them."""

    def __init__(self, port: int):
        self.port = port

    def __call__(self, payload: dict[str, Any] | bytes, delivery_id: str) -> None:
        body = payload if isinstance(payload, bytes) else to_body(payload)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        connection.request("POST", "/webhooks/genstore", body, genstore_headers(
            body, SECRET, **{"X-Genstore-Webhook-Id": delivery_id}))
        answer = connection.getresponse()
        assert answer.status == 202, answer.read()
        connection.close()


def _events(settings: Settings, refund_id: str) -> int:
    with session_factory(settings)() as session:
        return int(session.scalar(select(func.count()).select_from(RefundEvent).where(
            RefundEvent.refund_id == refund_id)) or 0)


def _letters(settings: Settings) -> dict[str, int]:
    with session_factory(settings)() as session:
        return {row.reason: row.id for row in session.scalars(select(DeadLetter))}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

