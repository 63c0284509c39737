"""The finance and reasons reports over refunds stored by the apply path (or, where a figure
needs a shape the apply path makes rarely, inserted rows), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from deliveries import apply, clear, delivery
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from payloads import PRODUCT_ID, VARIANT_ID, after_sale_event, camel_event, spec_sequence

from refunds import reasons, report_params, reports, sums
from refunds.db import session_factory
from refunds.models import Refund
from refunds.queries import BadParameter
from refunds.reasons import ProductTotal, ReasonTotal
from refunds.reports import DayTotals, OpenTotal
from refunds.settings import Settings
from schemas.reports import FinanceReportView

D = Decimal
MARCH_1 = date(2025, 3, 1)


def finance(settings: Settings, start: str, end: str, tz: str | None = None,
            **filters: str) -> reports.FinanceReport:
    with session_factory(settings)() as session:
        return reports.finance_report(report_params.interval(start, end, tz), session=session,
                                      **filters)


def store(settings: Settings, refund_id: str, **fields: Any) -> None:
    """A refund row as the fold would leave it, without its messages."""
    created = fields.pop("created_at", datetime(2025, 3, 1, 10, tzinfo=UTC))
    row = {"shop": "default", "order_id": "9001", "status": "in_progress",
           "refund_price": D("10.00"), "currency": "USD", "customer_id": "1", "note": None,
           "line_items": None, "fund_changes": [], "created_at": created,
           "updated_at": created, "refunded_at": None, "rights_reason_type": None,
           "rights_reason": None, "events_applied": 1, "last_applied_at": created}
    row.update(fields)
    if row["refunded_at"] is not None:
        row["status"] = "refunded"
    with session_factory(settings).begin() as session:
        session.add(Refund(refund_id=refund_id, **row))


def day(on: date, currency: str | None, opened: tuple[int, str] = (0, "0"),
        refunded: tuple[int, str] = (0, "0"), net: str = "0") -> DayTotals:
    return DayTotals(on, currency, opened[0], D(opened[1]), refunded[0], D(refunded[1]), D(net))


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((None, "2025-03-02", None), "from is required"),
        (("2025-03-01", None, None), "to is required"),
        (("2025-3-1", "2025-03-02", None), "from must be a date"),
        (("2025-02-30", "2025-03-02", None), "from must be a date"),
        (("20250301", "2025-03-02", None), "from must be a date"),
        (("2025-03-01", "2025-03-02T00:00", None), "to must be a date"),
        (("2025-03-01", "2025-03-01", None), "from must be before to"),
        (("2025-03-02", "2025-03-01", None), "from must be before to"),
        (("2024-01-01", "2025-01-02", None), "at most 366 days"),
        (("2025-03-01", "2025-03-02", "Mars/Olympus_Mons"), "tz must be an IANA time zone"),
        (("2025-03-01", "2025-03-02", "../../etc/passwd"), "tz must be an IANA time zone"),
        (("2025-03-01", "2025-03-02", ""), "tz must be an IANA time zone"),
        (("0001-01-01", "0001-01-02", "Asia/Shanghai"), "from must be a date after 0001-01-01"),
    ],
)
def test_bad_intervals_name_their_parameter(args: tuple[str | None, ...], named: str) -> None:
    with pytest.raises(BadParameter, match=named):
        report_params.interval(*args)


def test_a_leap_year_is_one_interval_and_midnight_is_the_zone_s() -> None:
    period = report_params.interval("2024-01-01", "2025-01-01", "Asia/Shanghai")
    assert period.start == datetime(2023, 12, 31, 16, tzinfo=UTC)
    assert period.end == datetime(2024, 12, 31, 16, tzinfo=UTC)
    assert report_params.interval("2025-03-01", "2025-03-02").tz == "UTC"


@pytest.mark.parametrize("bad", ["", "US D", "U" * 17, "=1+1", "usd\n"])
def test_bad_currencies_and_formats_are_bad_parameters(bad: str) -> None:
    with pytest.raises(BadParameter, match="currency"):
        report_params.currency_filter(bad)
    with pytest.raises(BadParameter, match="format"):
        report_params.report_format(bad or "xml")
    assert report_params.currency_filter("CNY") == "CNY"
    assert report_params.report_format(None) is report_params.ReportFormat.JSON


def test_the_spec_sequence_is_one_row_at_its_current_price(settings: Settings) -> None:
    # given SPEC's refund: opened at 25.00, changed to 20.00, refunded, all on March 1
    for payload in spec_sequence():
        payload["refund"]["currency"] = "USD"
        apply(settings, delivery(payload))
    # when the day is reported
    report = finance(settings, "2025-03-01", "2025-03-02")
    # then the refund is opened and refunded that day at 20.00, and changed by -5.00
    [row] = report.rows
    assert (row.date, row.refund_id, row.opened, row.refunded) == (MARCH_1, "7001", True, True)
    assert report.days == [day(MARCH_1, "USD", (1, "20.00"), (1, "20.00"), "-5.00")]
    assert report.open_at_end == []
    assert (report.from_date, report.to_date, report.tz) == (MARCH_1, date(2025, 3, 2), "UTC")


def test_a_refund_opened_one_day_and_refunded_another_has_a_row_for_each(
    settings: Settings,
) -> None:
    # given a refund opened on March 1 and refunded on March 3
    apply(settings, delivery(camel_event(status="in_progress", price="12.50", currency="EUR",
                                         update_time="2025-03-01T10:00:00Z")))
    apply(settings, delivery(camel_event(status="refunded", price="12.50", currency="EUR",
                                         update_time="2025-03-03T09:00:00Z")))
    # when March 1-3 is reported, then each day it was touched has its row and its total
    report = finance(settings, "2025-03-01", "2025-03-04")
    assert [(row.date, row.opened, row.refunded) for row in report.rows] == [
        (MARCH_1, True, False), (date(2025, 3, 3), False, True)]
    assert report.days == [day(MARCH_1, "EUR", opened=(1, "12.50")),
                           day(date(2025, 3, 3), "EUR", refunded=(1, "12.50"))]
    assert report.open_at_end == []
    # and a report ending before the refund counts it open at the end
    assert finance(settings, "2025-03-01", "2025-03-02").open_at_end == [
        OpenTotal("EUR", 1, D("12.50"))]


def test_a_refund_at_23_30_utc_is_on_the_next_day_in_shanghai(settings: Settings) -> None:
    # given a refund created at 23:30 UTC on March 1 (07:30 on March 2 in Shanghai)
    apply(settings, delivery(camel_event(price="8.00", currency="CNY",
                                         update_time="2025-03-01T23:30:00Z")))
    # when reported by UTC days and by Shanghai days
    utc = finance(settings, "2025-03-01", "2025-03-02")
    shanghai = finance(settings, "2025-03-02", "2025-03-03", "Asia/Shanghai")
    shanghai_day_before = finance(settings, "2025-03-01", "2025-03-02", "Asia/Shanghai")
    # then it falls on March 1 in UTC and on March 2 in Shanghai, never on Shanghai's March 1
    assert utc.days == [day(MARCH_1, "CNY", opened=(1, "8.00"))]
    assert shanghai.days == [day(date(2025, 3, 2), "CNY", opened=(1, "8.00"))]
    assert shanghai.tz == "Asia/Shanghai"
    assert shanghai_day_before.rows == [] and shanghai_day_before.open_at_end == []


def test_open_at_end_counts_unrefunded_refunds_with_null_prices_and_currencies(
    settings: Settings,
) -> None:
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC)
    # given refunds opened before the end, some refunded before it, one at it, one after it
    store(settings, "old-open", created_at=start - timedelta(days=30), refund_price=None,
          currency=None)
    store(settings, "old-refunded", created_at=start - timedelta(days=3),
          refunded_at=start + timedelta(hours=5), updated_at=start + timedelta(hours=5))
    store(settings, "refunded-at-end", created_at=start + timedelta(hours=1), refunded_at=end,
          updated_at=end)
    store(settings, "refunded-later", created_at=start + timedelta(hours=2),
          refund_price=D("0.05"), refunded_at=end + timedelta(days=1),
          updated_at=end + timedelta(days=1))
    store(settings, "after-end", created_at=end)
    store(settings, "placeholder", events_applied=0)
    # when the day is reported
    report = finance(settings, "2025-03-01", "2025-03-02")
    # then open: the null-priced one (as 0, in currency null) and the two refunded at or after
    assert report.open_at_end == [OpenTotal(None, 1, D("0")), OpenTotal("USD", 2, D("10.05"))]
    assert report.days == [day(MARCH_1, "USD", opened=(2, "10.05"), refunded=(1, "10.00"))]
    assert {row.refund_id for row in report.rows} == {
        "old-refunded", "refunded-at-end", "refunded-later"}


def test_fund_changes_count_on_their_day_with_null_amounts_as_zero(settings: Settings) -> None:
    # given a refund opened on Feb 28 whose fund changes fall on March 1 and March 2
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    store(settings, "7", created_at=at - timedelta(days=1), updated_at=at + timedelta(days=1),
          refund_price=D("3.00"), fund_changes=[
              {"amount": "20.00", "previous_amount": None, "at": at.isoformat()},
              {"amount": "18.50", "previous_amount": "20.00",
               "at": (at + timedelta(hours=1)).isoformat()},
              {"amount": None, "previous_amount": "18.50",
               "at": (at + timedelta(days=1)).isoformat()},
          ])
    # when Feb 28 to March 2 is reported
    report = finance(settings, "2025-02-28", "2025-03-03")
    # then Feb 28 opens it at its current price; each fund change counts on its own day
    assert report.days == [day(date(2025, 2, 28), "USD", opened=(1, "3.00")),
                           day(MARCH_1, "USD", net="18.50"),
                           day(date(2025, 3, 2), "USD", net="-18.50")]
    assert [row.fund_change_net for row in report.rows] == [D(0), D("18.50"), D("-18.50")]


def test_line_item_totals_read_discounts_when_present(settings: Settings) -> None:
    # given a refund whose line items carry discounts and tax lines (through the apply path),
    # and a row stored before line items kept either
    event = camel_event(refund_id="with-discounts", price="10.00", sku="S-1")
    line = event["refund"]["lineItems"][0]
    line["totalTax"] = "1.30"
    line["lineItem"] |= {"discountAllocations": [{"amount": "0.01"}, {"amount": "2.00"}],
                         "taxLines": [{"price": "1.30"}]}
    event["refund"]["lineItems"].append(
        {"quantity": "1", "totalTax": "0.20", "lineItem": {"productId": "2",
                                                           "discountAllocations": []}})
    apply(settings, delivery(event))
    store(settings, "stored-before", line_items=[{"subtotal": "4.00", "total_tax": "0.00"}])
    # when reported
    rows = {row.refund_id: row for row in finance(settings, "2025-03-01", "2025-03-02").rows}
    # then subtotals, taxes (not their tax lines again) and discounts add up; absent ones are 0
    discounted, before = rows["with-discounts"], rows["stored-before"]
    assert (discounted.line_items_subtotal, discounted.line_items_tax,
            discounted.line_items_discounts) == (D("10.00"), D("1.50"), D("2.01"))
    assert (before.line_items_subtotal, before.line_items_tax,
            before.line_items_discounts) == (D("4.00"), D("0.00"), D(0))


def test_currency_and_shop_limit_the_report(settings: Settings) -> None:
    apply(settings, delivery(camel_event(refund_id="1", price="1.00", currency="USD")))
    apply(settings, delivery(camel_event(refund_id="2", price="2.00", currency="CNY")))
    apply(settings, delivery(camel_event(refund_id="3", price="3.00", currency="USD"),
                             shop="other.example"))
    apply(settings, delivery(camel_event(refund_id="4", price="4.00")))
    everything = finance(settings, "2025-03-01", "2025-03-02")
    assert [(d.currency, d.opened_count) for d in everything.days] == [
        (None, 1), ("CNY", 1), ("USD", 2)]
    usd = finance(settings, "2025-03-01", "2025-03-02", currency="USD")
    assert usd.days == [day(MARCH_1, "USD", opened=(2, "4.00"))]
    shop = finance(settings, "2025-03-01", "2025-03-02", shop="other.example", currency="USD")
    assert [row.refund_id for row in shop.rows] == ["3"]


def test_csv_escapes_outside_text_and_keeps_amounts_readable(settings: Settings) -> None:
    # given a refund whose ids and customer could be read as formulas, with a fund change down
    apply(settings, delivery(camel_event(refund_id="=HYPERLINK(\"http://x\")", order_id="-3+4",
                                         price="25.00", customerId="@SUM(A1)", currency="USD",
                                         update_time="2025-03-01T10:00:00Z"), shop="+shop"))
    apply(settings, delivery(camel_event(refund_id="=HYPERLINK(\"http://x\")", order_id="-3+4",
                                         status="fund_change", price="20.00",
                                         update_time="2025-03-01T10:05:00Z"), shop="+shop"))
    # when written as CSV
    text = reports.csv_text(finance(settings, "2025-03-01", "2025-03-02").rows)
    # then the header names the columns, lines end in CRLF, and formulas arrive as text
    assert text.startswith("date,currency,shop,refund_id,order_id,customer_id,status,")
    assert text.count("\r\n") == 2 and "\n" not in text.replace("\r\n", "")
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == list(reports.COLUMNS) and len(lines[1]) == len(reports.COLUMNS)
    [parsed] = csv.DictReader(io.StringIO(text))
    assert parsed["refund_id"] == "'=HYPERLINK(\"http://x\")"
    assert (parsed["shop"], parsed["order_id"], parsed["customer_id"]) == (
        "'+shop", "'-3+4", "'@SUM(A1)")
    assert (parsed["refund_price"], parsed["opened_amount"], parsed["fund_change_net"]) == (
        "20.00", "20.00", "-5.00")
    assert (parsed["opened"], parsed["refunded"], parsed["refunded_amount"]) == ("1", "0", "0")
    assert parsed["created_at"] == "2025-03-01T10:00:00+00:00" and parsed["refunded_at"] == ""


def test_sums_stay_exact_past_the_default_decimal_precision() -> None:
    largest = D("999999999999999999.99999999")  # 18 digits and 8 places, the wire's limit
    assert sums.total([largest] * 1000) == D("999999999999999999999.99999000")
    assert sums.total([D("0.10"), D("0.20")]) == D("0.30")
    assert sums.total([]) == 0


def test_reasons_group_by_reason_and_product_per_currency(settings: Settings) -> None:
    # given after-sale refunds with reasons, one without, and one created the day after
    for refund_id, reason, price in [("1", "damaged", "10.00"), ("2", "damaged", "5.50"),
                                     ("3", "late", "1.00"), ("4", None, "2.00")]:
        apply(settings, delivery(after_sale_event(
            refund_id=refund_id, price=price, sku="128G;白色;", rights_type="refund_only",
            rights_reason=reason, rightsReasonType="2" if reason else None, currency="CNY")))
    apply(settings, delivery(after_sale_event(refund_id="5", price="9.00", sku="X",
                                              currency="CNY", rights_reason="late",
                                              update_time="2025-03-02T00:00:00Z")))
    # when March 1 is reported
    with session_factory(settings)() as session:
        report = reasons.reasons_report(report_params.interval("2025-03-01", "2025-03-02"),
                                        session=session)
    # then each reason (and "unspecified") has its count and amount, most frequent first
    assert report.reasons == [ReasonTotal("CNY", "2", "damaged", 2, D("15.50")),
                              ReasonTotal("CNY", "2", "late", 1, D("1.00")),
                              ReasonTotal("CNY", "unspecified", "unspecified", 1, D("2.00"))]
    # and the product the four share counts four refunds, four units and their subtotals
    assert report.products == [ProductTotal("CNY", PRODUCT_ID, VARIANT_ID, "128G;白色;", 4, 4,
                                            D("18.50"))]


# The property: for random refunds (prices of 0-8 places, currencies with null, times around
# New York's change to summer time, fund changes with null amounts) the JSON's every figure
# is the sum over the CSV's rows of its day and currency, and both are the figures read
# straight from the refunds; amounts are exact, positional, and keep their scale.
ZONES = st.sampled_from(["UTC", "Asia/Shanghai", "America/New_York", "Pacific/Chatham"])
AMOUNTS = st.integers(0, 8).flatmap(lambda places: st.decimals(
    min_value=0, max_value=D("999999999999999"), places=places))
WINDOW_START = datetime(2025, 3, 6, tzinfo=UTC)  # the report covers March 8 to 10
AMOUNT_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


@st.composite
def refund_rows(draw: st.DrawFn) -> dict[str, Any]:
    created = WINDOW_START + timedelta(minutes=draw(st.integers(0, 8 * 1440)))
    later = st.integers(0, 3 * 1440).map(lambda minutes: created + timedelta(minutes=minutes))
    refunded = draw(st.none() | later)
    changes = [{"amount": draw(st.none() | AMOUNTS.map(str)),
                "previous_amount": draw(st.none() | AMOUNTS.map(str)), "at": at.isoformat()}
               for at in sorted(draw(st.lists(later, max_size=3)))]
    touched = [created, *(datetime.fromisoformat(c["at"]) for c in changes)]
    return {"created_at": created, "refunded_at": refunded,
            "updated_at": max(touched + ([refunded] if refunded else [])),
            "refund_price": draw(st.none() | AMOUNTS), "fund_changes": changes,
            "currency": draw(st.sampled_from([None, "USD", "CNY"]))}


def expected_figures(refunds: list[dict[str, Any]], tz: str) -> tuple[dict[Any, list[Any]],
                                                                       dict[Any, list[Any]]]:
    """Per (date, currency): opened count and amount, refunded count and amount, fund change
    net; and per currency the open count and amount at the end. Read from the refunds."""
    zone = ZoneInfo(tz)
    start = datetime(2025, 3, 8, tzinfo=zone)
    end = datetime(2025, 3, 11, tzinfo=zone)
    days: dict[Any, list[Any]] = defaultdict(lambda: [0, D(0), 0, D(0), D(0)])
    still_open: dict[Any, list[Any]] = defaultdict(lambda: [0, D(0)])

    def on(instant: datetime) -> list[Any] | None:
        local = instant.astimezone(zone)
        return days[local.date().isoformat(), currency] if start <= local < end else None

    with localcontext(prec=80):
        for refund in refunds:
            currency, price = refund["currency"], refund["refund_price"]
            price = D(0) if price is None else price  # D("0.0") is false, and keeps its scale
            if (figures := on(refund["created_at"])) is not None:
                figures[0:2] = figures[0] + 1, figures[1] + price
            if refund["refunded_at"] and (figures := on(refund["refunded_at"])) is not None:
                figures[2:4] = figures[2] + 1, figures[3] + price
            for change in refund["fund_changes"]:
                if (figures := on(datetime.fromisoformat(change["at"]))) is not None:
                    figures[4] += (D(change["amount"] or 0) - D(change["previous_amount"] or 0))
            if refund["created_at"] < end and (refund["refunded_at"] is None
                                               or refund["refunded_at"] >= end):
                still_open[currency][0] += 1
                still_open[currency][1] += price
    return days, still_open


@hypothesis_settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(refunds=st.lists(refund_rows(), max_size=8), tz=ZONES)
def test_every_figure_is_the_sum_of_the_itemized_rows(settings: Settings,
                                                      refunds: list[dict[str, Any]],
                                                      tz: str) -> None:
    # given random refunds stored as the fold leaves them
    clear(settings)
    for number, fields in enumerate(refunds):
        store(settings, str(number), **fields)
    # when the three days are reported as JSON and as CSV
    report = finance(settings, "2025-03-08", "2025-03-11", tz)
    shown = FinanceReportView.model_validate(report).model_dump(mode="json", by_alias=True)
    rows = list(csv.DictReader(io.StringIO(reports.csv_text(report.rows))))
    # then each day is the sum of its rows, and every row belongs to a day
    with localcontext(prec=80):
        for total in shown["days"]:
            mine = [row for row in rows
                    if (row["date"], row["currency"]) == (total["date"], total["currency"] or "")]
            assert mine
            for count, amount in [("opened", "opened_amount"), ("refunded", "refunded_amount")]:
                assert total[f"{count}_count"] == sum(int(row[count]) for row in mine)
                assert D(total[amount]) == sum(D(row[amount]) for row in mine)
            assert D(total["fund_change_net"]) == sum(D(row["fund_change_net"]) for row in mine)
    assert len({(row["date"], row["currency"]) for row in rows}) == len(shown["days"])
    # and the figures are those read straight from the refunds, exact and in their scale
    days, still_open = expected_figures(refunds, tz)
    assert {(total["date"], total["currency"]): [
        total["opened_count"], total["opened_amount"], total["refunded_count"],
        total["refunded_amount"], total["fund_change_net"]] for total in shown["days"]} == {
        key: [f[0], format(f[1], "f"), f[2], format(f[3], "f"), format(f[4], "f")]
        for key, f in days.items()}
    assert {total["currency"]: [total["count"], total["amount"]]
            for total in shown["open_at_end"]} == {
        currency: [f[0], format(f[1], "f")] for currency, f in still_open.items()}
    for total in shown["days"]:
        assert all(AMOUNT_TEXT.fullmatch(total[name]) for name in
                   ("opened_amount", "refunded_amount", "fund_change_net"))
