"""`GET /reports/refunds`, `GET /reports/reasons` and `refund-sink report refunds|reasons`:
finance's daily figures (JSON or the CSV of its rows) and operations' reasons, over HTTP and
at a terminal, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import pytest
from deliveries import apply, delivery
from flask.testing import FlaskClient
from payloads import PRODUCT_ID, VARIANT_ID, after_sale_event, camel_event, spec_sequence
from processes import environment
from test_api import token
from test_cli import clean_env, cli

from refunds.db import session_factory
from refunds.settings import Settings
from refunds.tokens import create

pytestmark = pytest.mark.integration
MARCH_1 = "from=2025-03-01&to=2025-03-03"


def _refunds(settings: Settings, shop: str = "default") -> None:
    """SPEC's refund (USD, all on March 1) and one in CNY opened March 1 at 23:30 UTC and
    refunded March 2."""
    for payload in spec_sequence():
        payload["refund"]["currency"] = "USD"
        apply(settings, delivery(payload, shop=shop))
    for status, time in (("in_progress", "2025-03-01T23:30:00Z"),
                         ("refunded", "2025-03-02T08:00:00Z")):
        apply(settings, delivery(camel_event(refund_id="7002", status=status, price="8.80",
                                             currency="CNY", update_time=time), shop=shop))


def test_the_finance_report_as_json(client: FlaskClient, api_settings: Settings) -> None:
    # given two refunds over March 1 and 2
    _refunds(api_settings)
    # when March 1-2 is asked for
    answer = client.get(f"/reports/refunds?{MARCH_1}", headers=token(api_settings,
                                                                     "read_refunds"))
    # then each day and currency has its figures, as exact decimal strings
    assert answer.status_code == 200
    assert answer.get_json() == {
        "from": "2025-03-01", "to": "2025-03-03", "tz": "UTC",
        "days": [
            {"date": "2025-03-01", "currency": "CNY", "opened_count": 1,
             "opened_amount": "8.80", "refunded_count": 0, "refunded_amount": "0",
             "fund_change_net": "0"},
            {"date": "2025-03-01", "currency": "USD", "opened_count": 1,
             "opened_amount": "20.00", "refunded_count": 1, "refunded_amount": "20.00",
             "fund_change_net": "-5.00"},
            {"date": "2025-03-02", "currency": "CNY", "opened_count": 0,
             "opened_amount": "0", "refunded_count": 1, "refunded_amount": "8.80",
             "fund_change_net": "0"},
        ],
        "open_at_end": [],
    }
    # and in Shanghai both CNY figures fall on March 2, and March 1 ends with it still open
    shanghai = client.get("/reports/refunds?from=2025-03-01&to=2025-03-02&tz=Asia/Shanghai",
                          headers=token(api_settings, "read_refunds")).get_json()
    assert [(d["date"], d["currency"]) for d in shanghai["days"]] == [("2025-03-01", "USD")]
    assert shanghai["open_at_end"] == []


def test_the_finance_report_as_csv_is_its_rows(client: FlaskClient,
                                               api_settings: Settings) -> None:
    _refunds(api_settings)
    answer = client.get(f"/reports/refunds?{MARCH_1}&format=csv&currency=CNY",
                        headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert answer.headers["Content-Disposition"] == (
        "attachment; filename=refunds-2025-03-01-2025-03-03.csv")
    text = answer.get_data(as_text=True)
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    # the CNY refund: a row for the day it opened, one for the day it was refunded
    assert [(r["date"], r["refund_id"], r["opened"], r["refunded"], r["refunded_amount"])
            for r in rows] == [("2025-03-01", "7002", "1", "0", "0"),
                               ("2025-03-02", "7002", "0", "1", "8.80")]


def test_the_reasons_report(client: FlaskClient, api_settings: Settings) -> None:
    for refund_id, reason in (("1", "damaged"), ("2", None)):
        apply(api_settings, delivery(after_sale_event(
            refund_id=refund_id, price="3.00", sku="S-1", rights_reason=reason,
            rightsReasonType="2", currency="USD")))
    answer = client.get(f"/reports/reasons?{MARCH_1}",
                        headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 200
    assert answer.get_json() == {
        "from": "2025-03-01", "to": "2025-03-03", "tz": "UTC",
        "reasons": [
            {"currency": "USD", "rights_reason_type": "2", "rights_reason": "damaged",
             "count": 1, "amount": "3.00"},
            {"currency": "USD", "rights_reason_type": "2", "rights_reason": "unspecified",
             "count": 1, "amount": "3.00"},
        ],
        "products": [{"currency": "USD", "product_id": PRODUCT_ID, "variant_id": VARIANT_ID,
                      "sku": "S-1", "refunds": 2, "quantity": 2, "subtotal": "6.00"}],
    }


@pytest.mark.parametrize("path", ["/reports/refunds", "/reports/reasons"])
@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("to=2025-03-02", "from is required"),
        ("from=2025-03-01", "to is required"),
        ("from=2025-03-01&to=2025-03-32", "to must be a date"),
        ("from=01/03/2025&to=2025-03-02", "from must be a date"),
        ("from=2025-03-02&to=2025-03-01", "from must be before to"),
        ("from=2025-03-01&to=2025-03-01", "from must be before to"),
        ("from=2024-01-01&to=2025-01-03", "from and to may be at most 366 days"),
        ("from=2025-03-01&to=2025-03-02&tz=Mars/Base", "tz must be an IANA time zone"),
    ],
)
def test_bad_parameters_are_400_naming_them(client: FlaskClient, api_settings: Settings,
                                            path: str, query: str, named: str) -> None:
    answer = client.get(f"{path}?{query}", headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 400
    body = answer.get_json()
    assert body["error"] == "bad_request" and body["detail"].startswith(named)


@pytest.mark.parametrize(("query", "named"), [("currency=US%20D", "currency"),
                                              ("currency=", "currency"),
                                              ("format=xml", "format")])
def test_bad_currency_or_format_is_400(client: FlaskClient, api_settings: Settings,
                                       query: str, named: str) -> None:
    answer = client.get(f"/reports/refunds?{MARCH_1}&{query}",
                        headers=token(api_settings, "read_refunds"))
    assert answer.status_code == 400
    assert answer.get_json()["detail"].startswith(named)


def test_a_token_for_one_shop_sees_that_shop_s_figures(client: FlaskClient,
                                                       api_settings: Settings) -> None:
    # given refunds in two shops and a token for one of them
    _refunds(api_settings, "a.example")
    apply(api_settings, delivery(camel_event(refund_id="9", price="99.00", currency="USD"),
                                 shop="b.example"))
    with session_factory(api_settings).begin() as session:
        value = create(["read_refunds"], name="a", shop="a.example", session=session)
    headers = {"Authorization": f"Bearer {value}"}
    # when it asks for the report, then it sees only its own shop's refunds
    for path in (f"/reports/refunds?{MARCH_1}", f"/reports/reasons?{MARCH_1}"):
        assert client.get(path).status_code == 401
        mine = client.get(path, headers=headers).get_json()
        every = client.get(path, headers=token(api_settings, "read_refunds")).get_json()
        assert mine != every
    mine = client.get(f"/reports/refunds?{MARCH_1}", headers=headers).get_json()
    assert [d["opened_amount"] for d in mine["days"] if d["currency"] == "USD"] == ["20.00"]
    # and naming the other shop finds nothing
    other = client.get(f"/reports/refunds?{MARCH_1}&shop=b.example", headers=headers)
    assert other.status_code == 404


def test_the_commands_print_what_the_api_returns(client: FlaskClient,
                                                 api_settings: Settings) -> None:
    # given two refunds, and what the API answers for them
    _refunds(api_settings)
    headers = token(api_settings, "read_refunds")
    env = environment(api_settings)
    interval = ["--from", "2025-03-01", "--to", "2025-03-03", "--tz", "Asia/Shanghai"]
    query = f"{MARCH_1}&tz=Asia/Shanghai"
    # when the reports are asked for at a terminal, then stdout is the same JSON and CSV
    printed = cli("report", "refunds", *interval, env=env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == client.get(f"/reports/refunds?{query}",
                                                    headers=headers).get_json()
    as_csv = cli("report", "refunds", *interval, "--currency", "USD", "--format", "csv", env=env)
    assert as_csv.returncode == 0, as_csv.stderr
    served = client.get(f"/reports/refunds?{query}&currency=USD&format=csv", headers=headers)
    assert as_csv.stdout == served.get_data(as_text=True).replace("\r\n", "\n")
    reasons = cli("report", "reasons", *interval, "--shop", "default", env=env)
    assert json.loads(reasons.stdout) == client.get(f"/reports/reasons?{query}",
                                                    headers=headers).get_json()


@pytest.mark.parametrize(
    "args",
    [
        ["report", "refunds", "--from", "2025-03-01"],
        ["report", "refunds", "--from", "2025-3-1", "--to", "2025-03-02"],
        ["report", "refunds", "--from", "2025-03-02", "--to", "2025-03-01"],
        ["report", "refunds", "--from", "2025-03-01", "--to", "2025-03-02", "--tz", "Nowhere"],
        ["report", "refunds", "--from", "2025-03-01", "--to", "2025-03-02", "--currency", "$"],
        ["report", "refunds", "--from", "2025-03-01", "--to", "2025-03-02", "--format", "xls"],
        ["report", "reasons", "--from", "2024-01-01", "--to", "2025-03-02"],
        ["report"],
    ],
)
def test_bad_values_exit_2_in_one_line_before_the_database(args: list[str]) -> None:
    env = clean_env() | {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    result = cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("refund-sink: error: report"), line
    assert result.stdout == ""
