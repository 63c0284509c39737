"""The refund desk console used as a person would, in headless Chromium, against the real
stack (gunicorn, a Celery worker, PostgreSQL, Redis; see conftest.py for the data it holds):
sign in, find a refund by its order, read its timeline with the stale message marked, requeue
a dead letter and watch it resolve, acknowledge a flag, download the report's CSV, be refused
write actions with a read token, be signed out when the session expires, and no XSS probe
ever runs. Each page seen is also checked for tokens and, with REFUND_SINK_SCREENSHOTS set,
photographed at 1280x800 and 390x844."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import Page, expect
from sqlalchemy import select

from browser.conftest import EMAIL, NOTE_PROBE, Desk, Stack
from desk.console.session import signing_key
from refunds.db import session_factory
from refunds.models import DeadLetter, RefundFlag

pytestmark = pytest.mark.integration

SEARCH_PROBE = '"><img src=x onerror=alert(1)><script>alert(3)</script>'


def open_flags(stack: Stack, refund_id: str) -> dict[str, str | None]:
    """The refund's flags: acknowledged_by by rule (None while open)."""
    with session_factory(stack.settings)() as session:
        return {flag.rule: flag.acknowledged_by for flag in session.scalars(
            select(RefundFlag).where(RefundFlag.refund_id == refund_id))}


def flag_id(stack: Stack, refund_id: str) -> int:
    with session_factory(stack.settings)() as session:
        found = session.scalar(select(RefundFlag.id).where(RefundFlag.refund_id == refund_id))
        assert found is not None
        return found


def letter_state(stack: Stack, letter_id: int) -> str:
    with session_factory(stack.settings)() as session:
        letter = session.get(DeadLetter, letter_id)
        assert letter is not None
        return letter.state


def test_sign_in_with_a_token_and_out_again(desk: Desk, stack: Stack) -> None:
    page = desk.open("/desk/refunds")
    expect(page).to_have_url(stack.url("/desk/login"))  # no session: the sign-in page
    desk.look("login")
    page.fill("#token", "rst_not-a-token-anyone-was-given")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("unknown, revoked or expired")
    # when
    desk.sign_in(stack.write_token)
    # then
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("Dana (after-sales)")
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("read and write")
    desk.look("home")
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(stack.url("/desk/login"))
    expect(page.get_by_test_id("flash")).to_have_text("You are signed out.")
    desk.open("/desk/")
    expect(page).to_have_url(stack.url("/desk/login"))


def test_find_a_refund_by_its_order_and_read_its_timeline(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page = desk.page
    # when: the order id in the quick search
    page.fill("#q", "9001")
    page.get_by_test_id("quick-search-submit").click()
    # then: the order's page, both its refunds and its totals by status
    expect(page.get_by_test_id("order-id")).to_have_text("9001")
    expect(page.get_by_test_id("refund-row")).to_have_count(2)
    expect(page.locator('[data-testid=total-row][data-status=refunded] [data-testid=total-amount]')
           ).to_have_text("1450.00")
    expect(page.locator('[data-testid=total-row][data-status=in_progress] '
                        '[data-testid=total-amount]')).to_have_text("80.00")
    desk.look("order")
    page.locator('[data-testid=refund-row][data-refund-id="7001"]').get_by_test_id(
        "refund-link").click()
    expect(page.get_by_test_id("refund-id")).to_have_text("7001")
    expect(page.get_by_test_id("refund-status")).to_have_text("refunded")
    expect(page.get_by_test_id("refund-price")).to_have_text("1450.00")
    # the timeline: every delivery, in the order its message happened; the late one is stale
    rows = page.get_by_test_id("event-row")
    expect(rows).to_have_count(3)
    assert [rows.nth(n).get_attribute("data-delivery-id") for n in range(3)] == [
        "d-7001-first", "d-7001-refunded", "d-7001-fund"]
    stale = page.locator("[data-testid=event-row][data-effect=stale]")
    expect(stale).to_have_count(1)
    expect(stale).to_have_attribute("data-delivery-id", "d-7001-first")
    applied = page.locator("[data-testid=event-row][data-effect=applied]")
    expect(applied).to_have_count(2)
    # visibly marked: its own colour and a warning sign before the word, which applied rows lack
    mark = stale.get_by_test_id("event-effect")
    expect(mark).to_be_visible()
    assert mark.evaluate("e => getComputedStyle(e, '::before').content") == '"⚠ "'
    assert applied.first.get_by_test_id("event-effect").evaluate(
        "e => getComputedStyle(e, '::before').content") == "none"
    assert stale.evaluate("e => getComputedStyle(e).backgroundColor") != applied.first.evaluate(
        "e => getComputedStyle(e).backgroundColor")
    assert EMAIL not in page.content()  # contact details only on the raw body's page
    desk.look("refund")
    # the raw body of the stale delivery, as received, contact details included
    stale.get_by_test_id("raw-body-link").click()
    expect(page.get_by_test_id("delivery-id")).to_have_text("d-7001-first")
    expect(page.get_by_test_id("raw-body")).to_contain_text(EMAIL)
    expect(page.get_by_test_id("raw-body")).to_contain_text('"status": "in_progress"')
    desk.look("raw-body")


def test_search_refunds_with_filters_in_the_url(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page = desk.page
    page.get_by_test_id("nav-refunds").click()
    listed = page.get_by_test_id("refund-row")
    expect(listed.first).to_be_visible()
    assert {"7001", "7002", "7003", "7004", "7005"} <= {
        row.get_attribute("data-refund-id") for row in listed.all()}
    desk.look("refunds")
    # when
    page.select_option("#f-status", "refunded")
    page.fill("#f-currency", "USD")
    page.get_by_test_id("refund-search").click()
    # then: the matching refunds (the fields left blank, Per page included, mean no filter
    # and the default page), and the filters in the address, to share
    expect(page).to_have_url(re.compile(r"status=refunded&currency=USD"))
    expect(page.get_by_test_id("form-error"),
           "the search refused the form as a person leaves it").to_have_count(0)
    expect(listed).to_have_count(2)
    assert {row.get_attribute("data-refund-id") for row in listed.all()} == {"7001", "7004"}
    page.reload()
    expect(listed).to_have_count(2)
    expect(page.locator("#f-currency")).to_have_value("USD")
    page.get_by_test_id("view-flagged").click()
    expect(page.locator("[data-testid=refund-row][data-refund-id='7001']")).to_have_count(1)
    page.goto(stack.url("/desk/refunds?status=refunded"))
    expect(page.get_by_test_id("refund-row")).to_have_count(3)


def test_requeue_a_dead_letter_and_watch_it_resolve(desk: Desk, stack: Stack) -> None:
    conflict = stack.letters["delivery_conflict"]
    desk.sign_in(stack.write_token)
    page = desk.page
    page.get_by_test_id("nav-dead-letters").click()
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(3)
    desk.look("dead-letters")
    # requeue all asks first, saying how many it would send
    page.get_by_test_id("requeue-all").click()
    expect(page.get_by_test_id("requeue-count")).to_have_text("3")
    expect(page.get_by_test_id("requeue-all-confirm")).to_have_text("Requeue 3")
    desk.look("requeue-all")
    page.get_by_test_id("requeue-all-cancel").click()
    expect(page.get_by_test_id("dead-letter-row")).to_have_count(3)
    assert {letter_state(stack, letter) for letter in stack.letters.values()} == {"dead"}
    # the conflict: another body under an applied delivery id, which applies on its own
    page.locator(f"[data-testid=dead-letter-row][data-id='{conflict}'] "
                 "[data-testid=dead-letter-link]").click()
    expect(page.get_by_test_id("dead-letter-reason")).to_have_text("delivery_conflict")
    expect(page.get_by_test_id("dead-letter-body")).to_contain_text('"id": "8002"')
    expect(page.get_by_test_id("dead-letter-state")).to_have_text("dead")
    desk.look("dead-letter")
    # when
    page.get_by_test_id("requeue").click()
    # then: sent, and resolved once the worker applied it
    expect(page.get_by_test_id("flash")).to_contain_text(f"Requeued dead letter {conflict}")
    deadline = time.monotonic() + 30
    while page.get_by_test_id("dead-letter-state").inner_text() != "resolved":
        assert time.monotonic() < deadline, "the requeued letter did not resolve"
        page.wait_for_timeout(300)
        page.reload()
    expect(page.get_by_test_id("requeue")).to_be_disabled()
    assert letter_state(stack, conflict) == "resolved"
    page.goto(stack.url("/desk/refunds/default/8002"))
    expect(page.locator("[data-testid=event-row][data-origin=requeued]")).to_have_count(1)


def test_acknowledge_a_flag(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page = desk.page
    page.get_by_test_id("nav-flags").click()
    flag = page.locator("[data-testid=flags-table] [data-testid=flag-row][data-rule=amount_over]"
                        ).filter(has=page.get_by_test_id("refund-link").get_by_text("7001"))
    expect(flag).to_have_count(1)
    expect(flag).to_have_attribute("data-state", "open")
    expect(flag.get_by_test_id("refund-link")).to_have_text("7001")
    desk.look("flags")
    # when
    flag.get_by_test_id("acknowledge").click()
    # then
    expect(page.get_by_test_id("flash")).to_contain_text("acknowledged by Dana (after-sales)")
    expect(flag).to_have_attribute("data-state", "acknowledged")
    expect(flag.get_by_test_id("acknowledge")).to_have_count(0)
    assert open_flags(stack, "7001") == {"amount_over": "Dana (after-sales)"}


def test_the_report_and_its_csv(desk: Desk, stack: Stack, tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    desk.sign_in(stack.write_token)
    page = desk.page
    page.get_by_test_id("nav-reports").click()
    page.fill("#f-from", (today - timedelta(days=3)).isoformat())
    page.fill("#f-to", (today + timedelta(days=1)).isoformat())
    page.get_by_test_id("report-submit").click()
    usd = page.locator("[data-testid=report-row][data-currency=USD] "
                       "[data-testid=refunded-amount]")
    expect(usd).not_to_have_count(0)
    assert sum(Decimal(cell.inner_text()) for cell in usd.all()) == Decimal("1570.00")  # 1450+120
    expect(page.get_by_test_id("report-chart").locator("svg")).to_have_count(2)  # EUR, USD
    desk.look("reports")
    # when
    with page.expect_download() as download:
        page.get_by_test_id("report-csv").click()
    # then
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.startswith("refunds-") and saved.suffix == ".csv"
    text = saved.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    header = text.splitlines()[0].split(",")
    assert {"refund_id", "order_id", "status", "currency"} <= set(header), header
    [refund] = [row for row in rows if row["refund_id"] == "7001"]
    assert (refund["order_id"], refund["status"], refund["currency"]) == (
        "9001", "refunded", "USD")


def test_the_pipeline_shows_the_worker_and_the_dead_letters(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page = desk.page
    page.get_by_test_id("nav-pipeline").click()
    expect(page.get_by_test_id("worker-row")).not_to_have_count(0)
    expect(page.get_by_test_id("broker-figures")).to_have_attribute("data-broker", "up")
    expect(page.locator("[data-testid=dead-reason-row][data-reason=invalid_json]")
           ).to_have_attribute("data-count", "1")
    expect(page.get_by_test_id("applied-chart")).to_be_visible()
    desk.look("pipeline")


def test_a_read_token_is_refused_every_write_action(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.read_token)
    page = desk.page
    expect(page.get_by_test_id("signed-in-as")).to_contain_text("read only")
    desk.open("/desk/refunds/default/7003")
    expect(page.get_by_test_id("flag-row")).to_have_attribute("data-state", "open")
    expect(page.get_by_test_id("acknowledge")).to_have_count(0)
    desk.open("/desk/flags")
    expect(page.locator("[data-testid=flag-row][data-state=open]")).not_to_have_count(0)
    expect(page.get_by_test_id("acknowledge")).to_have_count(0)
    desk.open(f"/desk/dead-letters/{stack.letters['invalid_json']}")
    expect(page.get_by_test_id("error")).to_have_attribute("data-status", "403")
    expect(page.get_by_test_id("requeue")).to_have_count(0)
    # when: the requeue posted from the page anyway, with the session's own CSRF token
    desk.open("/desk/")
    letter = stack.letters["invalid_json"]
    with page.expect_navigation():
        page.evaluate("""(action) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            const csrf = document.createElement("input");
            csrf.name = "csrf_token";
            csrf.value = document.querySelector("meta[name=csrf-token]").content;
            form.append(csrf);
            document.body.append(form);
            form.submit();
        }""", f"/desk/dead-letters/{letter}/requeue")
    # then: the 403 page, and nothing done
    expect(page.get_by_test_id("error")).to_have_attribute("data-status", "403")
    expect(page.get_by_test_id("error-detail")).to_contain_text("write_refunds")
    assert letter_state(stack, letter) == "dead"
    # and the flag's acknowledge, posted with fetch as the page's own script would
    flag = flag_id(stack, "7003")
    status = page.evaluate("""async (action) => (await fetch(action, {method: "POST", headers:
        {"X-CSRFToken": document.querySelector("meta[name=csrf-token]").content}})).status""",
        f"/desk/flags/{flag}/acknowledge")
    assert status == 403
    assert open_flags(stack, "7003") == {"amount_over": None}


def test_the_session_ends_when_it_expires(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page = desk.page
    desk.open("/desk/flags")
    expect(page.get_by_test_id("signed-in-as")).to_be_visible()
    # when: the session reaches its age (REFUND_SINK_DESK_SESSION_MINUTES, whole minutes): the
    # cookie re-signed with the ingest's own key with its sign-in time moved back by that long
    # (the server counts the age from that time, so this is what waiting would do)
    age_the_session(desk, stack, by=timedelta(minutes=stack.ingest_settings.desk_session_minutes))
    page.reload()
    # then
    expect(page).to_have_url(stack.url("/desk/login"))
    expect(page.get_by_test_id("flash")).to_have_text("Your session expired; sign in again.")
    desk.open("/desk/flags")
    expect(page).to_have_url(stack.url("/desk/login"))


def age_the_session(desk: Desk, stack: Stack, *, by: timedelta) -> None:
    app = Flask("aged")
    app.secret_key = signing_key(stack.ingest_settings)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    context = desk.page.context
    [cookie] = [found for found in context.cookies() if found["name"] == "session"]
    session = serializer.loads(cookie["value"])
    session["since"] -= int(by.total_seconds())
    context.add_cookies([{**cookie, "value": serializer.dumps(session)}])  # type: ignore[list-item]


def test_no_xss_probe_ever_runs(desk: Desk, stack: Stack) -> None:
    desk.sign_in(stack.write_token)
    page: Page = desk.page
    # the quick search
    page.fill("#q", SEARCH_PROBE)
    page.get_by_test_id("quick-search-submit").click()
    expect(page.get_by_test_id("search-nothing")).to_be_visible()
    # every text field of the refund search (htmx swaps the results in)
    desk.open("/desk/refunds")
    for field in ("order_id", "customer_id", "currency", "min_amount", "shop"):
        page.fill(f"#f-{field}", SEARCH_PROBE)
    page.get_by_test_id("refund-search").click()
    expect(page.get_by_test_id("form-error")).to_be_visible()
    assert page.input_value("#f-order_id") == SEARCH_PROBE
    # a refund whose note is a probe: shown as text
    desk.open("/desk/refunds/default/7004")
    expect(page.get_by_test_id("refund-note")).to_have_text(NOTE_PROBE)
    desk.open("/desk/refunds?customer_id=42")
    expect(page.get_by_test_id("refund-row")).not_to_have_count(0)
    page.wait_for_timeout(300)  # a script or an image error would have run by now
    assert desk.dialogs == []
    assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0
