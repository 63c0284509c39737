"""Refund search over HTTP (issue 12): every filter of `GET /refunds` from the query string,
each bad value a JSON 400 naming its parameter, a token for one shop sees that shop only,
pages stay stable while refunds arrive, and the search benchmark runs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import camel_event
from sqlalchemy import delete

from bench import search_plans
from refunds import search, tokens
from refunds.db import session_factory
from refunds.models import RefundFlag
from refunds.settings import Settings

A, B = "a.example", "b.example"


def token(settings: Settings, shop: str | None = None) -> dict[str, str]:
    with session_factory(settings).begin() as session:
        value = tokens.create(["read_refunds"], name="test", shop=shop, session=session)
    return {"Authorization": f"Bearer {value}"}


def given_refunds(settings: Settings) -> None:
    """x1 (open flag), x2 (acknowledged flag), x3 (none); shop, order and customer shared."""
    for refund_id, shop, order, customer, status, price, currency, created, updated in (
        ("x1", A, "o1", "c1", None, "9.50", "USD", "2025-01-01T00:00:00Z", "2025-01-01T00:00Z"),
        ("x2", A, "o2", "c2", "refunded", "100", "EUR", "2025-03-01T00:00:00Z",
         "2025-03-05T00:00:00Z"),
        ("x3", B, "o1", "c2", "refunded", "25.00", "USD", "2025-02-01T00:00:00Z",
         "2025-02-01T00:00:00Z"),
    ):
        apply(settings, delivery(camel_event(
            refund_id=refund_id, order_id=order, status=status, price=price, currency=currency,
            customerId=customer, create_time=created, update_time=updated), shop=shop))
    raised = datetime(2025, 6, 1, tzinfo=UTC)
    with session_factory(settings).begin() as session:
        session.execute(delete(RefundFlag))
        session.add(RefundFlag(shop=A, refund_id="x1", rule="amount_over", details={},
                               raised_at=raised))
        session.add(RefundFlag(shop=A, refund_id="x2", rule="amount_over", details={},
                               raised_at=raised, acknowledged_at=raised, acknowledged_by="r"))


def ids(client: FlaskClient, query: str, headers: dict[str, str]) -> list[str]:
    response = client.get(query, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return [refund["id"] for refund in response.get_json()["refunds"]]


@pytest.mark.parametrize(("query", "expected"), [
    ("order_id=o1", ["x1", "x3"]),
    ("customer_id=c2", ["x2", "x3"]),
    ("status=refunded", ["x2", "x3"]),
    ("currency=EUR", ["x2"]),
    ("min_amount=25", ["x2", "x3"]),
    ("max_amount=25.00", ["x1", "x3"]),
    ("created_from=2025-02-01", ["x2", "x3"]),
    ("created_to=2025-02-01T00:00:00%2B00:00", ["x1"]),
    ("updated_since=2025-02-01T00:00:00", ["x2", "x3"]),
    ("flagged=true", ["x1"]),
    ("flagged=false", ["x2", "x3"]),
    ("currency=USD&min_amount=10&flagged=false", ["x3"]),
    ("customer_id=c2&created_to=2025-03-01&status=refunded", ["x3"]),
    ("status=&min_amount=&unknown=1", ["x1", "x2", "x3"]),
])
def test_each_parameter_filters_the_listing(client: FlaskClient, api_settings: Settings,
                                            query: str, expected: list[str]) -> None:
    # given three refunds in two shops
    given_refunds(api_settings)
    # when the listing is asked with the parameters, then it holds the refunds that pass all
    assert ids(client, f"/refunds?{query}", token(api_settings)) == expected


NUL_CURSOR = base64.urlsafe_b64encode(b"a\x00\nb").decode()
BAD = [
    ("status=bogus", "status"), ("currency=US%00D", "currency"), ("order_id=%00", "order_id"),
    ("customer_id=c%001", "customer_id"), ("min_amount=-1", "min_amount"),
    ("min_amount=NaN", "min_amount"), ("max_amount=Infinity", "max_amount"),
    ("max_amount=abc", "max_amount"), ("min_amount=1e3", "min_amount"),
    ("min_amount=5&max_amount=4.99", "min_amount"), ("created_from=yesterday", "created_from"),
    ("created_to=2025-02-30", "created_to"), ("updated_since=nope", "updated_since"),
    ("created_from=2025-03-02&created_to=2025-03-01", "created_from"),
    ("created_to=0001-01-01T00:00:00%2B01:00", "created_to"), ("flagged=yes", "flagged"),
    ("flagged=1", "flagged"), ("limit=0", "limit"), ("limit=501", "limit"),
    ("limit=abc", "limit"), ("cursor=%25%25%25", "cursor"), (f"cursor={NUL_CURSOR}", "cursor"),
    ("refunded_from=soon", "refunded_from"), ("fund_changed=yes", "fund_changed"),
    ("refunded_from=2025-03-02&refunded_to=2025-03-01", "refunded_from"),
]


@pytest.mark.parametrize(("query", "name"), BAD, ids=[query for query, _ in BAD])
def test_a_bad_value_is_a_json_400_naming_its_parameter(
    client: FlaskClient, api_settings: Settings, query: str, name: str
) -> None:
    given_refunds(api_settings)
    for path in ("/refunds", "/orders/o1/refunds"):
        response = client.get(f"{path}?{query}", headers=token(api_settings))
        assert response.status_code == 400, response.get_data(as_text=True)
        body: dict[str, Any] = response.get_json()
        assert body["error"] == "bad_request"
        assert name in body["detail"]


def test_blank_values_are_no_filter_and_the_default_page(
    client: FlaskClient, api_settings: Settings
) -> None:
    # a search form sends its empty fields too
    given_refunds(api_settings)
    headers = token(api_settings)
    blank = "&".join(f"{name}=" for name in (*search.FILTERS, "limit", "cursor"))
    assert ids(client, f"/refunds?{blank}", headers) == ids(client, "/refunds", headers)
    assert len(ids(client, "/refunds", headers)) > 1


def test_an_order_keeps_its_refunds_and_takes_the_other_filters(
    client: FlaskClient, api_settings: Settings
) -> None:
    given_refunds(api_settings)
    headers = token(api_settings)
    assert ids(client, "/orders/o1/refunds", headers) == ["x1", "x3"]
    assert ids(client, "/orders/o1/refunds?status=refunded", headers) == ["x3"]
    assert ids(client, "/orders/o1/refunds?order_id=o2", headers) == ["x1", "x3"]
    assert ids(client, "/orders/o2/refunds?shop=b.example", headers) == []


def test_a_token_for_one_shop_searches_that_shop_only(client: FlaskClient,
                                                      api_settings: Settings) -> None:
    given_refunds(api_settings)
    own = token(api_settings, shop=A)
    assert ids(client, "/refunds?order_id=o1", own) == ["x1"]
    assert ids(client, "/refunds?currency=USD&shop=a.example", own) == ["x1"]
    assert ids(client, "/refunds?customer_id=c2&flagged=false", own) == ["x2"]
    other = client.get("/refunds?order_id=o1&shop=b.example", headers=own)
    assert other.status_code == 404
    assert ids(client, "/refunds?order_id=o1&shop=b.example", token(api_settings)) == ["x3"]


def test_pages_neither_repeat_nor_skip_while_refunds_arrive(client: FlaskClient,
                                                            api_settings: Settings) -> None:
    # given six USD refunds over two shops, and the first page of two
    originals = [(A, "r10"), (A, "r20"), (A, "r30"), (B, "r10"), (B, "r40"), (B, "r50")]
    for shop, refund_id in originals:
        apply(api_settings, delivery(camel_event(refund_id=refund_id, currency="USD"),
                                     shop=shop))
    headers = token(api_settings)
    first = client.get("/refunds?currency=USD&limit=2", headers=headers).get_json()
    seen = [(refund["shop"], refund["id"]) for refund in first["refunds"]]
    assert seen == [(A, "r10"), (A, "r20")]
    # when refunds arrive that sort before the cursor and after it, in both shops
    for shop, refund_id in [(A, "r05"), (A, "r15"), (A, "r25"), (B, "r05"), (B, "r45")]:
        apply(api_settings, delivery(camel_event(refund_id=refund_id, currency="USD"),
                                     shop=shop))
    # then the following pages hold every original refund once, and nothing twice
    cursor = first["next_cursor"]
    while cursor is not None:
        page = client.get(f"/refunds?currency=USD&limit=2&cursor={cursor}",
                          headers=headers).get_json()
        seen += [(refund["shop"], refund["id"]) for refund in page["refunds"]]
        cursor = page["next_cursor"]
    assert len(seen) == len(set(seen))
    assert set(originals) <= set(seen)
    assert (A, "r05") not in seen and (A, "r15") not in seen  # before the cursor: next time
    assert seen == sorted(seen)


@pytest.mark.timeout(300)
def test_the_search_benchmark_prints_every_case_and_drops_its_database(
    postgres_admin_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def scratch() -> set[str]:
        with psycopg.connect(search_plans.libpq(postgres_admin_url)) as admin:
            return {row[0] for row in admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'search_plans_%'")}

    before = scratch()
    assert search_plans.main(["--database-url", postgres_admin_url, "--refunds", "3000"]) == 0
    printed = capsys.readouterr().out
    for label, _ in search_plans.CASES:
        assert f"## {label}: GET /refunds?" in printed
    assert printed.count("execution ") == len(search_plans.CASES)
    assert "migration 0005" in printed  # plans at this size say nothing: a tiny table is read
    assert scratch() <= before
