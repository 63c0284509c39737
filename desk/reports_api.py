"""Reports (scope read_refunds): the finance report, as JSON or the CSV of its itemized rows,
and the after-sale reasons report. A token limited to a shop sees that shop's figures only."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from desk.auth import require_scope, visible_shop
from ingest.errors import error
from ingest.services import services
from refunds import reasons, report_params, reports
from refunds.queries import BadParameter
from refunds.tokens import READ_REFUNDS
from schemas.reports import FinanceReportView, ReasonsReportView

bp = Blueprint("reports", __name__)


@bp.get("/reports/refunds")
@require_scope(READ_REFUNDS)
def refunds_report() -> ResponseReturnValue:
    """`?from=DATE&to=DATE[&tz=ZONE][&currency=C][&format=json|csv][&shop=DOMAIN]`; a bad
    parameter is a 400 naming it."""
    args = request.args
    try:
        period = report_params.interval(args.get("from"), args.get("to"), args.get("tz"))
        currency = report_params.currency_filter(args.get("currency"))
        output = report_params.report_format(args.get("format"))
    except BadParameter as bad:
        return error(400, "bad_request", str(bad))
    with services().sessions() as session:
        report = reports.finance_report(period, shop=visible_shop(args.get("shop")),
                                        currency=currency, session=session)
    if output is report_params.ReportFormat.CSV:
        name = f"refunds-{period.from_date}-{period.to_date}.csv"
        return Response(reports.csv_text(report.rows), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f"attachment; filename={name}"})
    return jsonify(FinanceReportView.model_validate(report).model_dump(mode="json",
                                                                         by_alias=True)), 200


@bp.get("/reports/reasons")
@require_scope(READ_REFUNDS)
def reasons_report() -> ResponseReturnValue:
    """`?from=DATE&to=DATE[&tz=ZONE][&shop=DOMAIN]`; a bad parameter is a 400 naming it."""
    args = request.args
    try:
        period = report_params.interval(args.get("from"), args.get("to"), args.get("tz"))
    except BadParameter as bad:
        return error(400, "bad_request", str(bad))
    with services().sessions() as session:
        report = reasons.reasons_report(period, shop=visible_shop(args.get("shop")),
                                        session=session)
    return jsonify(ReasonsReportView.model_validate(report).model_dump(mode="json",
                                                                         by_alias=True)), 200
