"""The console's part B pages (issue 13): dead letters with requeue, flags with acknowledge,
the finance report with its chart and CSV, the pipeline's figures; through Flask's test client
on both databases, with a real Redis where a page reads or writes it."""

from __future__ import annotations

import csv
import io
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import SECRET, make_settings
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event, to_body
from queued_messages import queued, take_queued
from signing import genstore_headers
from sqlalchemy import delete, select
from test_console import EMAIL, PROBES, csrf_of, given_a_refund, new_token, sign_in

from ingest import create_app
from refunds import pipeline
from refunds.db import session_factory
from refunds.models import DeadLetter, RefundEvent, RefundFlag
from refunds.settings import Settings


@pytest.fixture
def desk_settings(db_url: str, redis_url: str, key_prefix: str) -> Settings:
    return make_settings(db_url, redis_url, key_prefix)


@pytest.fixture
def client(desk_settings: Settings) -> FlaskClient:
    return create_app(desk_settings).test_client()


def letters(settings: Settings) -> dict[int, tuple[str, str]]:
    """Every dead letter's (reason, state) by id."""
    with session_factory(settings)() as session:
        return {row.id: (row.reason, row.state) for row in session.scalars(
            select(DeadLetter).order_by(DeadLetter.id))}


def given_bad_json(settings: Settings, count: int) -> list[int]:
    for number in range(count):
        apply(settings, delivery(b"{", delivery_id=f"bad-{number}"))
    return sorted(letters(settings))


def given_a_conflict(settings: Settings) -> int:
    """A dead letter that applies when requeued: another body under a delivery id already
    applied becomes a `delivery_conflict` of its own id."""
    apply(settings, delivery(camel_event(refund_id="8001"), delivery_id="same"))
    apply(settings, delivery(camel_event(refund_id="8002"), delivery_id="same"))
    [letter_id] = [key for key, (reason, _) in letters(settings).items()
                   if reason == "delivery_conflict"]
    return letter_id


def given_an_invalid_payload_through_the_webhook(client: FlaskClient, settings: Settings) -> int:
    """Signed and posted as Genstore would, so the letter keeps the headers the ingest keeps;
    the price is no amount, the customer's e-mail is in the body."""
    body = to_body(camel_event(price="lots", customer={"id": "42", "email": EMAIL}))
    assert client.post("/webhooks/genstore", data=body,
                       headers=genstore_headers(body, SECRET)).status_code == 202
    [queued_delivery] = take_queued(settings)
    apply(settings, queued_delivery)
    [(letter_id, (reason, _))] = letters(settings).items()
    assert reason == "invalid_payload"
    return letter_id


def given_flags(settings: Settings) -> dict[str, int]:
    """Refunds 7001 and 7002 (each flagged amount_over) and 7001 flagged over_line_items,
    which is acknowledged."""
    given_a_refund(settings)
    apply(settings, delivery(camel_event(refund_id="7002")))
    now = datetime.now(UTC)
    with session_factory(settings).begin() as session:
        rows = {f"{refund_id}:{rule}": RefundFlag(
            shop="default", refund_id=refund_id, rule=rule, details={"price": "20.00"},
            raised_at=now, acknowledged_at=now if rule == "over_line_items" else None,
            acknowledged_by="someone" if rule == "over_line_items" else None)
            for refund_id, rule in (("7001", "amount_over"), ("7002", "amount_over"),
                                    ("7001", "over_line_items"))}
        session.execute(delete(RefundFlag))  # only these: the rules raised some on apply
        session.add_all(rows.values())
        session.flush()
        return {key: row.id for key, row in rows.items()}


def acknowledged_by(settings: Settings, flag_id: int) -> str | None:
    with session_factory(settings)() as session:
        flag = session.get(RefundFlag, flag_id)
        assert flag is not None
        return flag.acknowledged_by


def ids_shown(page: str, testid: str = "dead-letter-row") -> list[str]:
    return re.findall(rf'data-testid="{testid}" data-(?:id|flag-id)="([^"]+)"', page)


def no_probe(page: str, probe: str) -> None:
    assert probe not in page
    assert "<script>alert" not in page and "<img src=x" not in page


# --- dead letters -----------------------------------------------------------------------------

def test_dead_letters_filter_by_reason_and_state_in_the_url_and_page_by_cursor(
        client: FlaskClient, desk_settings: Settings) -> None:
    bad = given_bad_json(desk_settings, 3)
    conflict = given_a_conflict(desk_settings)
    sign_in(client, desk_settings, "write_refunds")
    # when
    first = client.get("/desk/dead-letters?reason=invalid_json&state=dead&limit=2").text
    # then
    assert ids_shown(first) == [str(bad[0]), str(bad[1])]
    assert 'value="invalid_json" selected' in first and 'value="dead" selected' in first
    [next_link] = re.findall(r'href="([^"]+)" data-testid="next-page"', first)
    rest = client.get(next_link.replace("&amp;", "&")).text
    assert ids_shown(rest) == [str(bad[2])] and 'data-testid="next-page"' not in rest
    everything = client.get("/desk/dead-letters").text
    assert ids_shown(everything) == [*map(str, bad), str(conflict)]
    assert f'data-id="{conflict}" data-state="dead" data-reason="delivery_conflict"' in everything
    assert client.get("/desk/dead-letters?state=resolved").text.count(
        'data-testid="dead-letter-row"') == 0
    refused = client.get("/desk/dead-letters?reason=nope")
    assert refused.status_code == 400 and "reason must be one of" in refused.text


def test_a_dead_letter_shows_its_error_validation_errors_redacted_headers_and_body(
        client: FlaskClient, desk_settings: Settings) -> None:
    letter_id = given_an_invalid_payload_through_the_webhook(client, desk_settings)
    sign_in(client, desk_settings, "write_refunds")
    page = client.get(f"/desk/dead-letters/{letter_id}")
    assert page.status_code == 200
    assert 'data-testid="dead-letter-reason">invalid_payload<' in page.text
    assert page.text.count('data-testid="validation-error-row"') >= 1
    assert "refundPrice" in page.text or "refund_price" in page.text
    assert "<th>x-genstore-hmac-sha256</th><td><code>[redacted]</code>" in page.text
    assert genstore_headers(b"", SECRET)["X-Genstore-Topic"] in page.text
    assert EMAIL in page.text  # the body, for the operator
    assert 'data-testid="requeue"' in page.text
    assert client.get("/desk/dead-letters/424242").status_code == 404


def test_a_read_token_opens_no_dead_letter_and_requeues_none(
        client: FlaskClient, desk_settings: Settings) -> None:
    [letter_id] = given_bad_json(desk_settings, 1)
    sign_in(client, desk_settings, "read_refunds")
    csrf = csrf_of(client, "/desk/")
    for path in ("/desk/dead-letters", f"/desk/dead-letters/{letter_id}",
                 "/desk/dead-letters/requeue-all"):
        answer = client.get(path)
        assert answer.status_code == 403 and "write_refunds" in answer.text, path
    for path, data in ((f"/desk/dead-letters/{letter_id}/requeue", {}),
                       ("/desk/dead-letters/requeue-all", {"reason": "", "count": "1"})):
        assert client.post(path, data={**data, "csrf_token": csrf}).status_code == 403
    assert letters(desk_settings) == {letter_id: ("invalid_json", "dead")}
    assert queued(desk_settings) == []


def test_a_requeued_dead_letter_resolves_when_the_worker_applies_it(
        client: FlaskClient, desk_settings: Settings) -> None:
    letter_id = given_a_conflict(desk_settings)
    sign_in(client, desk_settings, "write_refunds")
    path = f"/desk/dead-letters/{letter_id}/requeue"
    # without the CSRF token: refused, nothing sent
    assert client.post(path).status_code == 400
    assert client.post(path, data={"csrf_token": "wrong"}).status_code == 400
    assert letters(desk_settings)[letter_id] == ("delivery_conflict", "dead")
    assert queued(desk_settings) == []
    # when
    answer = client.post(path, data={"csrf_token": csrf_of(client, "/desk/")})
    # then
    assert (answer.status_code, answer.headers["Location"]) == (
        302, f"/desk/dead-letters/{letter_id}")
    shown = client.get(answer.headers["Location"]).text
    assert f"Requeued dead letter {letter_id}" in shown
    assert 'data-testid="dead-letter-state">requeued<' in shown
    [sent] = take_queued(desk_settings)
    assert sent.origin.value == "requeued"
    apply(desk_settings, sent)  # as the worker would
    assert letters(desk_settings)[letter_id] == ("delivery_conflict", "resolved")
    resolved = client.get(f"/desk/dead-letters/{letter_id}").text
    assert 'data-testid="dead-letter-state">resolved<' in resolved
    again = client.post(path, data={"csrf_token": csrf_of(client, "/desk/")})
    assert "already resolved" in client.get(again.headers["Location"]).text
    assert queued(desk_settings) == []


def test_requeue_all_confirms_the_count_and_asks_again_when_it_changed(
        client: FlaskClient, desk_settings: Settings) -> None:
    bad = given_bad_json(desk_settings, 2)
    conflict = given_a_conflict(desk_settings)
    sign_in(client, desk_settings, "write_refunds")
    listed = client.get("/desk/dead-letters?reason=invalid_json&state=dead").text
    [link] = re.findall(r'href="([^"]+)" data-testid="requeue-all"', listed)
    assert link.replace("&amp;", "&") == "/desk/dead-letters/requeue-all?reason=invalid_json"
    # the confirmation: how many it will send
    confirm = client.get(link).text
    assert 'data-testid="requeue-count" data-count="2"' in confirm
    assert 'name="count" value="2"' in confirm and 'data-testid="requeue-all-confirm"' in confirm
    everything = client.get("/desk/dead-letters/requeue-all").text
    assert 'data-count="3"' in everything
    # without CSRF: nothing sent
    form = {"reason": "invalid_json", "count": "2"}
    assert client.post("/desk/dead-letters/requeue-all", data=form).status_code == 400
    # when: another letter of the reason arrives after the confirmation
    apply(desk_settings, delivery(b"[", delivery_id="bad-late"))
    stale = client.post("/desk/dead-letters/requeue-all",
                        data={**form, "csrf_token": csrf_of(client, "/desk/")})
    # then: the new count, asked again; nothing sent
    assert stale.status_code == 409
    assert 'data-count="3"' in stale.text and 'data-testid="requeue-count-changed"' in stale.text
    assert queued(desk_settings) == []
    assert {state for _, state in letters(desk_settings).values()} == {"dead"}
    # when: confirmed with the new count
    done = client.post("/desk/dead-letters/requeue-all", data={
        **form, "count": "3", "csrf_token": csrf_of(client, "/desk/")})
    # then
    assert (done.status_code, done.headers["Location"]) == (
        302, "/desk/dead-letters?reason=invalid_json")
    late = max(letters(desk_settings))
    shown = client.get(done.headers["Location"]).text
    assert f"Requeued 3 dead letters: {bad[0]}, {bad[1]}, {late}." in shown
    assert {letter_id: state for letter_id, (_, state) in letters(desk_settings).items()} == {
        bad[0]: "requeued", bad[1]: "requeued", late: "requeued", conflict: "dead"}
    assert sorted(sent.delivery_id for sent in queued(desk_settings)) == [
        "bad-0", "bad-1", "bad-late"]
    assert 'data-count="0"' in client.get(link).text


@pytest.mark.parametrize("probe", PROBES)
def test_no_dead_letter_page_reflects_an_xss_probe(client: FlaskClient, desk_settings: Settings,
                                                   probe: str) -> None:
    apply(desk_settings, delivery(probe.encode(), delivery_id=probe, topic=probe))
    sign_in(client, desk_settings, "write_refunds")
    [letter_id] = letters(desk_settings)
    pages = [f"/desk/dead-letters?{field}={probe}"
             for field in ("reason", "state", "shop", "cursor", "limit")]
    pages += [f"/desk/dead-letters/requeue-all?{field}={probe}" for field in ("reason", "shop")]
    pages += ["/desk/dead-letters", f"/desk/dead-letters/{letter_id}"]
    for path in pages:
        answer = client.get(path)
        assert answer.status_code < 500, path
        no_probe(answer.text, probe)
    assert "&lt;" in client.get(f"/desk/dead-letters/{letter_id}").text


# --- flags ------------------------------------------------------------------------------------

def test_flags_by_state_and_rule_link_to_their_refund(client: FlaskClient,
                                                      desk_settings: Settings) -> None:
    flags = given_flags(desk_settings)
    sign_in(client, desk_settings)
    everything = client.get("/desk/flags").text
    assert ids_shown(everything, "flag-row") == [str(flag) for flag in flags.values()]
    open_ones = client.get("/desk/flags?state=open").text
    assert ids_shown(open_ones, "flag-row") == [str(flags["7001:amount_over"]),
                                                str(flags["7002:amount_over"])]
    assert 'value="open" selected' in open_ones
    acknowledged = client.get("/desk/flags?state=acknowledged&rule=over_line_items").text
    assert re.findall(r'data-rule="([^"]+)" data-state="([^"]+)"', acknowledged) == [
        ("over_line_items", "acknowledged")]
    assert "by someone" in acknowledged
    assert 'href="/desk/refunds/default/7002" data-testid="refund-link"' in open_ones
    assert client.get("/desk/flags?rule=amount_over&state=acknowledged").text.count(
        'data-testid="flag-row"') == 0
    refused = client.get("/desk/flags?rule=nope")
    assert refused.status_code == 400 and "rule must be one of" in refused.text


def test_acknowledge_from_the_flags_page(client: FlaskClient, desk_settings: Settings) -> None:
    flags = given_flags(desk_settings)
    flag_id = flags["7002:amount_over"]
    sign_in(client, desk_settings, "write_refunds", name="risk desk")
    page = client.get("/desk/flags?state=open&rule=amount_over").text
    assert page.count('data-testid="acknowledge"') == 2
    path = f"/desk/flags/{flag_id}/acknowledge"
    # without CSRF: refused, nothing done
    assert client.post(path, data={"state": "open"}).status_code == 400
    assert acknowledged_by(desk_settings, flag_id) is None
    # when
    answer = client.post(path, data={"state": "open", "rule": "amount_over",
                                     "csrf_token": csrf_of(client, "/desk/")})
    # then: back to the same filter, the flag gone from the open ones
    assert (answer.status_code, answer.headers["Location"]) == (
        302, "/desk/flags?state=open&rule=amount_over")
    shown = client.get(answer.headers["Location"]).text
    assert f"Flag {flag_id} (amount_over on refund 7002) acknowledged by risk desk." in shown
    assert ids_shown(shown, "flag-row") == [str(flags["7001:amount_over"])]
    assert acknowledged_by(desk_settings, flag_id) == "risk desk"
    assert client.post("/desk/flags/424242/acknowledge",
                       data={"csrf_token": csrf_of(client, "/desk/")}).status_code == 404


def test_a_read_token_sees_flags_without_acknowledge_and_is_refused_it(
        client: FlaskClient, desk_settings: Settings) -> None:
    flags = given_flags(desk_settings)
    sign_in(client, desk_settings, "read_refunds")
    page = client.get("/desk/flags?state=open").text
    assert page.count('data-testid="flag-row"') == 2 and 'data-testid="acknowledge"' not in page
    flag_id = flags["7001:amount_over"]
    answer = client.post(f"/desk/flags/{flag_id}/acknowledge",
                         data={"csrf_token": csrf_of(client, "/desk/")})
    assert answer.status_code == 403 and "write_refunds" in answer.text
    assert acknowledged_by(desk_settings, flag_id) is None


@pytest.mark.parametrize("probe", PROBES)
def test_no_flags_page_reflects_an_xss_probe(client: FlaskClient, desk_settings: Settings,
                                             probe: str) -> None:
    given_flags(desk_settings)
    sign_in(client, desk_settings)
    for field in ("state", "rule", "shop", "cursor", "limit"):
        answer = client.get(f"/desk/flags?{field}={probe}")
        assert answer.status_code < 500, field
        no_probe(answer.text, probe)


# --- reports ----------------------------------------------------------------------------------

def given_report_refunds(settings: Settings) -> None:
    """USD: 7001 refunded 20.00 on March 1st (then changed to 18.00), 7003 refunded 5.50 on
    March 2nd; EUR: 7004 refunded 7.00 on March 2nd; 7005 still open."""
    given_a_refund(settings)
    for refund_id, price, currency, day, status in (
            ("7003", "5.50", "USD", "02", "refunded"), ("7004", "7.00", "EUR", "02", "refunded"),
            ("7005", "3.00", "USD", "02", None)):
        apply(settings, delivery(camel_event(
            refund_id=refund_id, price=price, currency=currency, status=status,
            update_time=f"2025-03-{day}T12:00:00Z", create_time=f"2025-03-{day}T11:00:00Z")))


def test_the_report_shows_the_summary_open_at_end_and_a_chart_per_currency(
        client: FlaskClient, desk_settings: Settings) -> None:
    given_report_refunds(desk_settings)
    sign_in(client, desk_settings)
    page = client.get("/desk/reports?from=2025-03-01&to=2025-03-04&tz=UTC")
    assert page.status_code == 200
    rows = re.findall(r'data-testid="report-row" data-date="([^"]+)" data-currency="([^"]*)">'
                      r'.*?data-testid="refunded-amount">([^<]+)<', page.text, re.S)
    assert rows == [("2025-03-01", "USD", "18.00"), ("2025-03-02", "EUR", "7.00"),
                    ("2025-03-02", "USD", "5.50")]
    opened = re.findall(r'data-testid="open-row" data-currency="([^"]*)">.*?'
                        r'data-testid="open-amount">([^<]+)<', page.text, re.S)
    assert opened == [("USD", "3.00")]
    # one chart per currency, one bar per day of the range, each titled with its figure
    charts = page.text.split('data-testid="report-chart-currency"')[1:]
    assert len(charts) == 2 and "Refunded per day, EUR" in charts[0]
    bars = re.findall(r'data-label="([^"]+)" data-figure="([^"]+)"><title>([^<]+)</title>',
                      charts[1])
    assert bars == [("2025-03-01", "18.00", "2025-03-01: 18.00"),
                    ("2025-03-02", "5.50", "2025-03-02: 5.50"),
                    ("2025-03-03", "0", "2025-03-03: 0")]
    assert 'data-testid="report-chart"' in page.text and "<svg" in page.text
    usd = client.get("/desk/reports?from=2025-03-01&to=2025-03-04&currency=USD").text
    assert usd.count('data-testid="report-row"') == 2
    assert 'data-testid="report-form"' in client.get("/desk/reports").text  # the last week


def test_the_report_csv_is_the_apis_csv_as_an_attachment(client: FlaskClient,
                                                         desk_settings: Settings) -> None:
    given_report_refunds(desk_settings)
    sign_in(client, desk_settings)
    page = client.get("/desk/reports?from=2025-03-01&to=2025-03-04&currency=USD").text
    [link] = re.findall(r'href="([^"]+)" download data-testid="report-csv"', page)
    link = link.replace("&amp;", "&")
    assert link == "/desk/reports.csv?from=2025-03-01&to=2025-03-04&currency=USD"
    # when
    answer = client.get(link)
    # then
    bearer = {"Authorization": f"Bearer {new_token(desk_settings, 'read_refunds')}"}
    api = client.get("/reports/refunds?from=2025-03-01&to=2025-03-04&currency=USD&format=csv",
                     headers=bearer)
    assert answer.status_code == 200 and answer.text == api.text
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=refunds-2025-03-01-2025-03-04.csv")
    rows = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    assert [(row["date"], row["refund_id"]) for row in rows] == [
        ("2025-03-01", "7001"), ("2025-03-02", "7003"), ("2025-03-02", "7005")]
    assert client.get("/desk/reports.csv?from=2025-03-04&to=2025-03-01").status_code == 400


@pytest.mark.parametrize(("query", "message"), [
    ("from=2025-03-04&to=2025-03-01", "from must be before to"),
    ("from=yesterday&to=2025-03-01", "from must be a date"),
    ("from=2025-03-01&to=2025-03-02&tz=Mars/Base", "tz"),
    ("from=2025-03-01&to=2025-03-02&currency=US-D", "currency must be a currency code"),
])
def test_a_bad_report_value_shows_the_form_with_the_error(
        client: FlaskClient, desk_settings: Settings, query: str, message: str) -> None:
    sign_in(client, desk_settings)
    answer = client.get(f"/desk/reports?{query}")
    assert answer.status_code == 400
    assert 'data-testid="report-form"' in answer.text and 'data-testid="form-error"' in answer.text
    assert message in answer.text and 'data-testid="report-table"' not in answer.text


@pytest.mark.parametrize("probe", PROBES)
def test_no_report_page_reflects_an_xss_probe(client: FlaskClient, desk_settings: Settings,
                                              probe: str) -> None:
    sign_in(client, desk_settings)
    valid = {"from": "2025-03-01", "to": "2025-03-02"}
    for field in ("from", "to", "tz", "currency", "shop"):
        query = {**valid, field: probe}
        for path in ("/desk/reports", "/desk/reports.csv"):
            answer = client.get(path, query_string=query)
            assert answer.status_code < 500, (path, field)
            no_probe(answer.text, probe)


# --- pipeline ---------------------------------------------------------------------------------

def given_events_recorded(settings: Settings, now: datetime) -> None:
    """Applied events 2 and 61 minutes ago, stale ones 2 minutes ago, a duplicate now."""
    with session_factory(settings).begin() as session:
        for minutes_ago, effect, count in ((2, "applied", 2), (2, "stale", 1),
                                           (61, "applied", 4), (0, "duplicate_message", 1)):
            for number in range(count):
                session.add(RefundEvent(
                    shop="default", refund_id="1", delivery_id=f"{effect}-{minutes_ago}-{number}",
                    received_at=now, effect=effect, origin="webhook",
                    recorded_at=now - timedelta(minutes=minutes_ago)))


def test_applied_per_minute_counts_applied_and_stale_events_by_minute(
        desk_settings: Settings) -> None:
    now = datetime.now(UTC).replace(second=30)
    given_events_recorded(desk_settings, now)
    with session_factory(desk_settings)() as session:
        counts = pipeline.applied_per_minute(session=session, now=now)
        other_shop = pipeline.applied_per_minute(session=session, now=now, shop="other")
    assert len(counts) == 60
    assert counts[-1].minute == now.replace(second=0, microsecond=0)
    assert [(entry.minute, entry.count) for entry in counts if entry.count] == [
        (now.replace(second=0, microsecond=0) - timedelta(minutes=2), 3)]
    assert sum(entry.count for entry in other_shop) == 0


def test_the_pipeline_shows_queue_ledger_spool_dead_letters_applied_and_workers(
        client: FlaskClient, desk_settings: Settings) -> None:
    given_events_recorded(desk_settings, datetime.now(UTC))
    letter_id = given_a_conflict(desk_settings)
    given_bad_json(desk_settings, 2)
    heartbeat = Path(desk_settings.heartbeat_dir) / f"{os.getpid()}@{socket.gethostname()}"
    heartbeat.parent.mkdir(parents=True)
    heartbeat.touch()
    sign_in(client, desk_settings, "write_refunds")
    csrf = csrf_of(client, "/desk/")
    client.post(f"/desk/dead-letters/{letter_id}/requeue", data={"csrf_token": csrf})
    # when
    page = client.get("/desk/pipeline")
    # then
    assert page.status_code == 200
    text = page.text
    assert 'data-testid="queue-depth">1<' in text and 'data-testid="unsettled">1<' in text
    assert 'data-testid="spool-pending">0<' in text and 'data-testid="spool-quarantined">0<' in text
    assert re.findall(r'data-testid="dead-reason-row" data-reason="([^"]+)" data-count="(\d+)"',
                      text) == [("invalid_json", "2")]
    assert 'data-testid="applied-last-hour">4<' in text  # the 3 given and refund 8001
    assert text.count('data-testid="chart-bar"') == 60
    assert re.search(rf'data-testid="worker-row" data-pid="{os.getpid()}" data-age="[0-2]"', text)
    assert 'href="/metrics" data-testid="metrics-link"' in text
    assert "Flower: not configured (REFUND_SINK_FLOWER_URL)" in text
    assert 'hx-get="/desk/pipeline/figures" hx-trigger="every 10s"' in text
    fragment = client.get("/desk/pipeline/figures")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert 'data-testid="queue-depth">1<' in fragment.text


def test_the_pipeline_links_flower_where_it_is_configured(db_url: str) -> None:
    settings = make_settings(db_url, flower_url="http://flower.internal:5555")
    client = create_app(settings).test_client()
    sign_in(client, settings)
    page = client.get("/desk/pipeline").text
    assert '<a href="http://flower.internal:5555" data-testid="flower-link">Flower</a>' in page


def test_the_pipeline_says_broker_unreachable_instead_of_failing(db_url: str) -> None:
    settings = make_settings(db_url)  # Redis at port 1: nothing answers
    client = create_app(settings).test_client()
    sign_in(client, settings)
    for path in ("/desk/pipeline", "/desk/pipeline/figures"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert 'data-testid="broker-unreachable">broker unreachable<' in answer.text
        assert 'data-testid="queue-depth"' not in answer.text
        assert 'data-testid="no-workers"' in answer.text


def test_every_part_b_page_needs_a_session(client: FlaskClient) -> None:
    for path in ("/desk/dead-letters", "/desk/dead-letters/1", "/desk/dead-letters/requeue-all",
                 "/desk/flags", "/desk/reports", "/desk/reports.csv", "/desk/pipeline",
                 "/desk/pipeline/figures"):
        answer = client.get(path)
        assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/login"), path
