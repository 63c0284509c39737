"""The console at /desk/ (part A: sign-in, the session, CSRF, the refund and order pages),
through Flask's test client on both databases."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from conftest import SECRET, make_settings
from deliveries import apply, delivery
from flask import Flask
from flask.testing import FlaskClient
from payloads import camel_event, to_body
from signing import genstore_headers
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from ingest import create_app
from refunds import tokens
from refunds.db import session_factory
from refunds.models import ApiToken, RefundFlag
from refunds.settings import Settings

PROBES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
SEARCH_FIELDS = ("order_id", "customer_id", "status", "currency", "min_amount", "max_amount",
                 "created_from", "created_to", "updated_since", "flagged", "shop", "limit",
                 "cursor")
EMAIL = "buyer@example.com"


@pytest.fixture
def desk_settings(db_url: str, redis_url: str, key_prefix: str) -> Settings:
    return make_settings(db_url, redis_url, key_prefix)


@pytest.fixture
def app(desk_settings: Settings) -> Flask:
    return create_app(desk_settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def new_token(settings: Settings, *scopes: str, name: str = "agent",
              shop: str | None = None) -> str:
    with session_factory(settings).begin() as session:
        return tokens.create(scopes, name=name, shop=shop, session=session)


def csrf_of(client: FlaskClient, path: str = "/desk/login") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found[1]


def sign_in(client: FlaskClient, settings: Settings, *scopes: str, **token_args: str) -> str:
    token = new_token(settings, *(scopes or ("read_refunds",)), **token_args)
    answer = client.post("/desk/login", data={"token": token, "csrf_token": csrf_of(client)})
    assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/"), answer.text
    return token


def session_cookie(answer: TestResponse) -> str:
    [cookie] = [value for value in answer.headers.getlist("Set-Cookie")
                if value.startswith("session=")]
    return cookie


def given_a_refund(settings: Settings, note: str | None = "Note") -> None:
    """7001 of order 9001: in progress at 10:00 (arriving last, so stale), refunded at 10:09,
    a fund change at 10:20; one line item, the customer's contact details in the bodies."""
    customer = {"id": "42", "email": EMAIL, "phone": "+1 555 0100"}
    for minute, status, price, delivery_id in (
            ("09", "refunded", "20.00", "d-refunded"), ("20", "fund_change", "18.00", "d-fund"),
            ("00", "in_progress", "25.00", "d-first")):
        event = camel_event(status=status, price=price, update_time=f"2025-03-01T10:{minute}:00Z",
                            create_time="2025-03-01T10:00:00Z", note=note, sku="SKU-1",
                            customer=customer, currency="USD", customerId="42")
        apply(settings, delivery(event, delivery_id=delivery_id))


def given_a_flag(settings: Settings, refund_id: str = "7001") -> int:
    with session_factory(settings).begin() as session:
        flag = RefundFlag(shop="default", refund_id=refund_id, rule="amount_over",
                          details={"price": "20.00"}, raised_at=datetime.now(UTC))
        session.add(flag)
        session.flush()
        return flag.id


def flag_state(settings: Settings, flag_id: int) -> tuple[datetime | None, str | None]:
    with session_factory(settings)() as session:
        flag = session.get(RefundFlag, flag_id)
        assert flag is not None
        return flag.acknowledged_at, flag.acknowledged_by


# --- signing in, the session ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/desk/", "/desk/refunds", "/desk/refunds/default/7001",
                                  "/desk/orders/9001", "/desk/deliveries/default/d-first",
                                  "/desk/refunds.csv", "/desk/search?q=7001"])
def test_without_a_session_every_page_sends_to_login(client: FlaskClient, path: str) -> None:
    answer = client.get(path)
    assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/login")
    login = client.get("/desk/login")
    assert login.status_code == 200
    assert 'name="token"' in login.text and 'name="csrf_token"' in login.text


def test_sign_in_sets_a_signed_strict_httponly_cookie_holding_no_token(
        client: FlaskClient, desk_settings: Settings) -> None:
    token = new_token(desk_settings, "read_refunds")
    # when
    answer = client.post("/desk/login", data={"token": token, "csrf_token": csrf_of(client)})
    # then
    cookie = session_cookie(answer)
    flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "expires"} <= flags and "secure" not in flags
    assert "SameSite=Strict" in cookie
    assert token not in cookie and tokens.digest(token) not in cookie
    with client.session_transaction() as session:
        assert set(session) == {"token_id", "since", "_permanent"}
    home = client.get("/desk/")
    assert home.status_code == 200 and token not in home.text
    assert home.headers["Cache-Control"] == "no-store"
    assert "script-src 'self';" in home.headers["Content-Security-Policy"]
    assert "agent" in home.text and "read only" in home.text


def test_the_cookie_is_secure_over_https_or_when_configured(desk_settings: Settings) -> None:
    token = new_token(desk_settings, "read_refunds")
    for settings, base_url in ((desk_settings, "https://desk.example"),
                               (Settings(**{**vars(desk_settings), "desk_secure_cookie": True}),
                                "http://localhost")):
        client = create_app(settings).test_client()
        csrf = re.search(r'name="csrf_token" value="([^"]+)"',
                         client.get("/desk/login", base_url=base_url).text)
        assert csrf
        answer = client.post("/desk/login", base_url=base_url,
                             headers={"Referer": f"{base_url}/desk/login"},
                             data={"token": token, "csrf_token": csrf[1]})
        assert answer.status_code == 302
        assert "Secure" in session_cookie(answer)


def test_an_unknown_or_revoked_token_signs_nobody_in(client: FlaskClient,
                                                     desk_settings: Settings) -> None:
    token = new_token(desk_settings, "write_refunds")
    with session_factory(desk_settings).begin() as session:
        [row] = session.scalars(select(ApiToken)).all()
        tokens.revoke(row.id, session=session)
    for attempt in ("rst_nope", token, PROBES[0]):
        answer = client.post("/desk/login", data={"token": attempt, "csrf_token": csrf_of(client)})
        assert answer.status_code == 401
        assert "unknown, revoked or expired" in answer.text and attempt not in answer.text
        assert client.get("/desk/").status_code == 302


def test_sign_out_ends_the_session(client: FlaskClient, desk_settings: Settings) -> None:
    sign_in(client, desk_settings)
    answer = client.post("/desk/logout", data={"csrf_token": csrf_of(client, "/desk/")})
    assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/login")
    assert client.get("/desk/").status_code == 302
    assert "You are signed out." in client.get("/desk/login").text


def test_the_session_expires_on_the_server_side(client: FlaskClient,
                                                desk_settings: Settings) -> None:
    sign_in(client, desk_settings)
    assert client.get("/desk/").status_code == 200
    # when: the session's sign-in time is older than 480 minutes (the cookie itself is kept)
    with client.session_transaction() as session:
        session["since"] = int(time.time()) - 480 * 60
    # then
    answer = client.get("/desk/refunds")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/login")
    assert "Your session expired" in client.get("/desk/login").text
    assert client.get("/desk/").status_code == 302


def test_a_refresh_after_expiry_sends_the_whole_page_to_sign_in(
        client: FlaskClient, desk_settings: Settings) -> None:
    # given a pipeline page whose figures htmx reloads, and a session that has expired
    sign_in(client, desk_settings)
    with client.session_transaction() as session:
        session["since"] = int(time.time()) - 480 * 60
    # when htmx asks for the figures
    answer = client.get("/desk/pipeline/figures", headers={"HX-Request": "true"})
    # then it is told to send the browser to the sign-in page, not given the page to swap in
    assert (answer.status_code, answer.headers["HX-Redirect"], answer.text) == (
        401, "/desk/login", "")


def test_a_read_token_is_not_shown_the_dead_letters(client: FlaskClient,
                                                    desk_settings: Settings) -> None:
    sign_in(client, desk_settings, "read_refunds")
    home = client.get("/desk/").text
    assert 'data-testid="nav-refunds"' in home and 'data-testid="nav-dead-letters"' not in home
    assert "Dead letters" not in home
    sign_in(client, desk_settings, "write_refunds")
    assert 'data-testid="nav-dead-letters"' in client.get("/desk/").text


def test_a_short_session_lifetime_is_the_cookies_expiry_too(desk_settings: Settings) -> None:
    settings = Settings(**{**vars(desk_settings), "desk_session_minutes": 2})
    client = create_app(settings).test_client()
    token = new_token(settings, "read_refunds")
    answer = client.post("/desk/login", data={"token": token, "csrf_token": csrf_of(client)})
    [expires] = re.findall(r"Expires=([^;]+)", session_cookie(answer))
    left = parsedate_to_datetime(expires) - datetime.now(UTC)
    assert timedelta(seconds=100) < left <= timedelta(seconds=120)
    with client.session_transaction() as session:
        session["since"] = int(time.time()) - 121
    assert client.get("/desk/").status_code == 302


@pytest.mark.parametrize("ending", ["revoked", "expired"])
def test_a_token_revoked_or_expired_meanwhile_ends_the_session(
        client: FlaskClient, desk_settings: Settings, ending: str) -> None:
    sign_in(client, desk_settings, "write_refunds")
    assert client.get("/desk/").status_code == 200
    # when
    with session_factory(desk_settings).begin() as session:
        [row] = session.scalars(select(ApiToken)).all()
        if ending == "revoked":
            tokens.revoke(row.id, session=session)
        else:
            session.execute(update(ApiToken).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    # then
    answer = client.get("/desk/refunds")
    assert (answer.status_code, answer.headers["Location"]) == (302, "/desk/login")
    assert "revoked or has expired" in client.get("/desk/login").text


def test_every_worker_accepts_the_others_cookie_until_the_secret_changes(
        desk_settings: Settings) -> None:
    first, second = create_app(desk_settings).test_client(), create_app(desk_settings).test_client()
    sign_in(first, desk_settings)
    cookie = first.get_cookie("session")
    assert cookie is not None
    second.set_cookie("session", cookie.value)
    assert second.get("/desk/").status_code == 200
    # a rotated webhook secret derives another key: everyone is signed out
    rotated = create_app(Settings(**{**vars(desk_settings), "genstore_secrets": ("new",)}))
    third = rotated.test_client()
    third.set_cookie("session", cookie.value)
    assert third.get("/desk/").status_code == 302
    # REFUND_SINK_DESK_SECRET, when set, is the key whatever the webhook secrets
    own = Settings(**{**vars(desk_settings), "desk_secret": "desk-key"})
    with_own = create_app(own).test_client()
    sign_in(with_own, own)
    other = create_app(Settings(**{**vars(own), "genstore_secrets": ("new",)})).test_client()
    own_cookie = with_own.get_cookie("session")
    assert own_cookie is not None
    other.set_cookie("session", own_cookie.value)
    assert other.get("/desk/").status_code == 200


# --- CSRF and write actions -------------------------------------------------------------------

@pytest.mark.parametrize("csrf", [None, "wrong", "forged.from.elsewhere"])
def test_a_post_without_the_right_csrf_token_is_400_and_does_nothing(
        client: FlaskClient, desk_settings: Settings, csrf: str | None) -> None:
    given_a_refund(desk_settings)
    flag_id = given_a_flag(desk_settings)
    token = new_token(desk_settings, "write_refunds")
    data = {} if csrf is None else {"csrf_token": csrf}
    # signing in
    client.get("/desk/login")
    refused = client.post("/desk/login", data={**data, "token": token})
    assert refused.status_code == 400 and "CSRF" in refused.text
    assert client.get("/desk/").status_code == 302
    # acknowledging, signing out
    sign_in(client, desk_settings, "write_refunds")
    ack = client.post("/desk/refunds/default/7001/acknowledge", data={**data, "flag_id": flag_id})
    assert ack.status_code == 400 and 'data-testid="error"' in ack.text
    assert flag_state(desk_settings, flag_id) == (None, None)
    assert client.post("/desk/logout", data=data).status_code == 400
    assert client.get("/desk/").status_code == 200


def test_the_webhook_and_the_json_api_take_no_csrf_token(client: FlaskClient,
                                                         desk_settings: Settings) -> None:
    body = to_body(camel_event())
    assert client.post("/webhooks/genstore", data=body,
                       headers=genstore_headers(body, SECRET)).status_code == 202
    given_a_refund(desk_settings)
    flag_id = given_a_flag(desk_settings)
    bearer = {"Authorization": f"Bearer {new_token(desk_settings, 'write_refunds')}"}
    assert client.post(f"/flags/{flag_id}/acknowledge", headers=bearer).status_code == 200


def test_a_read_token_sees_no_write_action_and_is_refused_one(client: FlaskClient,
                                                              desk_settings: Settings) -> None:
    given_a_refund(desk_settings)
    flag_id = given_a_flag(desk_settings)
    sign_in(client, desk_settings, "read_refunds")
    page = client.get("/desk/refunds/default/7001")
    assert 'data-testid="flag-row"' in page.text and 'data-testid="acknowledge"' not in page.text
    # when: the form is posted anyway
    answer = client.post("/desk/refunds/default/7001/acknowledge",
                         data={"flag_id": flag_id, "csrf_token": csrf_of(client, "/desk/")})
    # then
    assert answer.status_code == 403 and "write_refunds" in answer.text
    assert flag_state(desk_settings, flag_id) == (None, None)


def test_a_write_token_acknowledges_a_flag_from_the_refund(client: FlaskClient,
                                                           desk_settings: Settings) -> None:
    given_a_refund(desk_settings)
    flag_id = given_a_flag(desk_settings)
    sign_in(client, desk_settings, "write_refunds", name="risk desk")
    page = client.get("/desk/refunds/default/7001")
    assert 'data-testid="acknowledge"' in page.text
    answer = client.post("/desk/refunds/default/7001/acknowledge",
                         data={"flag_id": flag_id, "csrf_token": csrf_of(client, "/desk/")})
    assert answer.status_code == 302
    acknowledged_at, by = flag_state(desk_settings, flag_id)
    assert acknowledged_at is not None and by == "risk desk"
    shown = client.get(answer.headers["Location"]).text
    assert 'data-state="acknowledged"' in shown and "Flag acknowledged." in shown
    # a flag of another refund is not this refund's to acknowledge
    apply(desk_settings, delivery(camel_event(refund_id="7002")))
    other = given_a_flag(desk_settings, refund_id="7002")
    wrong = client.post("/desk/refunds/default/7001/acknowledge",
                        data={"flag_id": other, "csrf_token": csrf_of(client, "/desk/")})
    assert wrong.status_code == 404 and flag_state(desk_settings, other) == (None, None)


# --- the pages, with real data ----------------------------------------------------------------

def test_the_refund_page_shows_lines_fund_changes_flags_and_the_timeline(
        client: FlaskClient, desk_settings: Settings) -> None:
    given_a_refund(desk_settings)
    given_a_flag(desk_settings)
    sign_in(client, desk_settings)
    page = client.get("/desk/refunds/default/7001").text
    assert 'data-testid="refund-status">refunded<' in page
    assert 'data-testid="refund-price">18.00<' in page
    assert 'data-testid="refund-currency">USD<' in page
    assert 'data-testid="refund-refunded-at">2025-03-01 10:09:00 UTC<' in page
    for column in ("price", "subtotal", "total_tax", "sku"):
        assert f"<th>{column}</th>" in page
    assert page.count('data-testid="fund-change-row"') == 1
    assert 'data-rule="amount_over" data-state="open"' in page
    rows = re.findall(r'data-testid="event-row" data-delivery-id="([^"]+)" '
                      r'data-effect="([^"]+)" data-origin="([^"]+)"', page)
    assert rows == [("d-first", "stale", "webhook"), ("d-refunded", "applied", "webhook"),
                    ("d-fund", "applied", "webhook")]
    assert 'class="effect effect-stale" data-testid="event-effect">stale<' in page
    assert EMAIL not in page  # contact details only on the raw body
    raw = client.get("/desk/deliveries/default/d-first")
    assert raw.status_code == 200 and EMAIL in raw.text
    assert raw.text.count('data-testid="raw-delivery"') == 1
    assert client.get("/desk/deliveries/default/nope").status_code == 404
    assert client.get("/desk/refunds/default/nope").status_code == 404


def test_the_order_page_totals_its_refunds_by_status_and_currency(
        client: FlaskClient, desk_settings: Settings) -> None:
    for refund_id, status, price, currency in (("1", "refunded", "10.10", "USD"),
                                               ("2", "refunded", "0.20", "USD"),
                                               ("3", None, "5.00", "USD"),
                                               ("4", "refunded", "7.00", "EUR")):
        apply(desk_settings, delivery(camel_event(refund_id=refund_id, order_id="77",
                                                  status=status, price=price, currency=currency)))
    apply(desk_settings, delivery(camel_event(refund_id="5", order_id="78")))
    sign_in(client, desk_settings)
    page = client.get("/desk/orders/77").text
    assert page.count('data-testid="refund-row"') == 4
    totals = re.findall(r'data-testid="total-row" data-status="([^"]+)" data-currency="([^"]*)">'
                        r'.*?data-testid="total-amount">([^<]+)<', page, re.S)
    assert totals == [("in_progress", "USD", "5.00"), ("refunded", "EUR", "7.00"),
                      ("refunded", "USD", "10.30")]
    assert client.get("/desk/orders/nope").status_code == 404


def test_refunds_search_filters_live_in_the_url_and_page_by_cursor(
        client: FlaskClient, desk_settings: Settings) -> None:
    for number in range(5):
        apply(desk_settings, delivery(camel_event(refund_id=f"10{number}", order_id="55",
                                                  status="refunded" if number % 2 else None)))
    sign_in(client, desk_settings)
    first = client.get("/desk/refunds?status=in_progress&limit=2").text
    assert re.findall(r'data-refund-id="([^"]+)"', first) == ["100", "102"]
    assert 'value="in_progress" selected' in first
    [next_link] = re.findall(r'href="([^"]+)" data-testid="next-page"', first)
    assert "status=in_progress" in next_link and "cursor=" in next_link
    rest = client.get(next_link.replace("&amp;", "&")).text
    assert re.findall(r'data-refund-id="([^"]+)"', rest) == ["104"]
    assert 'data-testid="next-page"' not in rest
    bad = client.get("/desk/refunds?min_amount=lots")
    assert bad.status_code == 400 and "min_amount must be a decimal amount" in bad.text
    views = client.get("/desk/refunds").text
    assert 'href="/desk/refunds?flagged=true" data-testid="view-flagged"' in views
    assert 'href="/desk/refunds?fund_changed=true" data-testid="view-fund-changed"' in views
    assert re.search(r'href="/desk/refunds\?refunded_from=[0-9A-Z:%+-]+" '
                     r'data-testid="view-refunded-today"', views), views
    assert 'data-testid="view-stuck"' in views


def test_quick_search_takes_an_id_to_its_page(client: FlaskClient,
                                              desk_settings: Settings) -> None:
    given_a_refund(desk_settings)
    sign_in(client, desk_settings)
    assert client.get("/desk/search?q=7001").headers["Location"] == "/desk/refunds/default/7001"
    assert client.get("/desk/search?q=9001").headers["Location"] == "/desk/orders/9001"
    assert client.get("/desk/search?q=42").headers["Location"] == "/desk/refunds?customer_id=42"
    assert client.get("/desk/search?q=none").status_code == 404


def test_a_shop_token_sees_its_shop_only(client: FlaskClient, desk_settings: Settings) -> None:
    apply(desk_settings, delivery(camel_event(refund_id="1"), shop="a.example"))
    apply(desk_settings, delivery(camel_event(refund_id="2"), shop="b.example"))
    sign_in(client, desk_settings, shop="a.example")
    listed = client.get("/desk/refunds").text
    assert re.findall(r'data-refund-id="([^"]+)"', listed) == ["1"]
    assert client.get("/desk/refunds/b.example/2").status_code == 404
    assert client.get("/desk/refunds?shop=b.example").status_code == 404


def test_csv_download_is_the_page_shown_and_formula_safe(client: FlaskClient,
                                                         desk_settings: Settings) -> None:
    notes = ("=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "plain")
    for number, note in enumerate(notes):
        apply(desk_settings, delivery(camel_event(refund_id=f"2{number}", note=note,
                                                  price="3.50")))
    sign_in(client, desk_settings)
    answer = client.get("/desk/refunds.csv?limit=5")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="refunds.csv"'
    rows = list(csv.DictReader(io.StringIO(answer.text, newline="")))
    assert [row["id"] for row in rows] == ["20", "21", "22", "23", "24"]
    assert [row["note"] for row in rows] == ["'" + note for note in notes[:5]]
    assert rows[0]["refund_price"] == "3.50"
    listed = client.get("/desk/refunds?limit=5").text
    [link] = re.findall(r'href="([^"]+)" download data-testid="download-csv"', listed)
    assert link == "/desk/refunds.csv?limit=5"


# --- escaping ---------------------------------------------------------------------------------

@pytest.mark.parametrize("probe", PROBES)
def test_no_page_reflects_an_xss_probe_unescaped(client: FlaskClient, desk_settings: Settings,
                                                 probe: str) -> None:
    given_a_refund(desk_settings, note=probe)
    sign_in(client, desk_settings)
    pages = [f"/desk/refunds?{field}={probe}" for field in SEARCH_FIELDS]
    pages += [f"/desk/search?q={probe}", f"/desk/orders/{probe}",
              f"/desk/refunds/default/{probe}", f"/desk/deliveries/default/{probe}",
              "/desk/refunds/default/7001", "/desk/refunds", "/desk/orders/9001",
              "/desk/deliveries/default/d-first"]
    for path in pages:
        answer = client.get(path, follow_redirects=True)
        assert answer.status_code < 500, path
        assert probe not in answer.text, path
        assert "<script>alert" not in answer.text and "<img src=x" not in answer.text, path
    assert "&lt;" in client.get("/desk/refunds/default/7001").text

