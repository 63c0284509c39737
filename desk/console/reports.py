"""The finance report: a form for the range, zone and currency (in the URL), the summary by
day and currency and the refunds open at the end (`refunds.reports.finance_report`, as GET
/reports/refunds), a bar chart of the amount refunded per day for each currency, and the
itemized CSV of the same range (the API's `format=csv`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from desk.auth import visible_shop
from desk.console.charts import Chart, bar_chart
from ingest.services import services
from refunds import report_params, reports
from refunds.queries import BadParameter

bp = Blueprint("reports", __name__)

FIELDS = ("from", "to", "tz", "currency", "shop")
DEFAULT_DAYS = 7  # the form's range before anyone chose one: the last week, today included


@bp.get("/reports")
def finance() -> ResponseReturnValue:
    form = _form(request.args, today=datetime.now(UTC).date())
    query = {name: value for name, value in form.items() if value}
    try:
        report = _report(form)
    except BadParameter as bad:
        return render_template("desk/reports.html", form=form, query=query, error=str(bad),
                               report=None, charts=[]), 400
    return render_template("desk/reports.html", form=form, query=query, error=None,
                           report=report, charts=charts(report))


@bp.get("/reports.csv")
def download() -> ResponseReturnValue:
    """The itemized rows of the range, the same CSV as GET /reports/refunds?format=csv."""
    form = _form(request.args, today=datetime.now(UTC).date())
    try:
        report = _report(form)
    except BadParameter as bad:
        abort(400, description=str(bad))
    name = f"refunds-{report.from_date}-{report.to_date}.csv"
    return Response(reports.csv_text(report.rows), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename={name}"})


def _form(args: MultiDict[str, str], *, today: date) -> dict[str, str]:
    """The fields as given; the last DEFAULT_DAYS days (UTC) when neither date is."""
    form = {name: args.get(name, "").strip() for name in FIELDS}
    if not form["from"] and not form["to"]:
        form["from"] = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        form["to"] = (today + timedelta(days=1)).isoformat()
    return form


def _report(form: dict[str, str]) -> reports.FinanceReport:
    """BadParameter, naming the field, for a bad date, zone, range, currency or shop."""
    period = report_params.interval(form["from"], form["to"], form["tz"] or None)
    currency = report_params.currency_filter(form["currency"] or None)
    with services().sessions() as session:
        return reports.finance_report(period, shop=visible_shop(form["shop"] or None),
                                      currency=currency, session=session)


def charts(report: reports.FinanceReport) -> list[Chart]:
    """One chart per currency in the summary: a bar per day of the range (zero where nothing
    was refunded), the day's refunded amount exactly as summed."""
    days = [report.from_date + timedelta(days=offset)
            for offset in range((report.to_date - report.from_date).days)]
    currencies = sorted({day.currency or "" for day in report.days})
    return [bar_chart(f"Refunded per day, {currency or 'no currency'}",
                      _bars(days, {day.date: day.refunded_amount for day in report.days
                                   if (day.currency or "") == currency}))
            for currency in currencies]


def _bars(days: Sequence[date], amounts: dict[date, Decimal]) -> list[tuple[str, Decimal, str]]:
    zero = Decimal("0")
    return [(day.isoformat(), amounts.get(day, zero), format(amounts.get(day, zero), "f"))
            for day in days]
