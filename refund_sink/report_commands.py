"""`refund-sink report refunds|reasons`: the desk's reports on stdout, the same JSON (or, for
refunds with `--format csv`, the same CSV) that `GET /reports/...` returns. A bad date, zone
or currency exits 2 with one line, as argparse does for the other commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from refund_sink.operations import shop_argument
from refunds import reasons, report_params, reports
from refunds.db import session_factory
from refunds.queries import BadParameter
from refunds.settings import Settings
from schemas.reports import FinanceReportView, ReasonsReportView


def add_command(commands: Any) -> None:
    report = commands.add_parser("report", help="finance and after-sale reports")
    kinds = report.add_subparsers(dest="report_command", required=True)
    refunds = kinds.add_parser("refunds", help="per day: refunds opened, refunded, changed")
    _interval_arguments(refunds)
    refunds.add_argument("--currency", help="only refunds in this currency")
    refunds.add_argument("--format", choices=[kind.value for kind in report_params.ReportFormat],
                         default=report_params.ReportFormat.JSON.value,
                         help="csv: one row per refund and day it was touched")
    refunds.set_defaults(handler=report_refunds)
    reasons = kinds.add_parser("reasons", help="refunds created, by reason and by product")
    _interval_arguments(reasons)
    reasons.set_defaults(handler=report_reasons)


def _interval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="from_date", required=True, metavar="DATE",
                        help="first day, YYYY-MM-DD")
    parser.add_argument("--to", dest="to_date", required=True, metavar="DATE",
                        help="day after the last, YYYY-MM-DD")
    parser.add_argument("--tz", default="UTC", metavar="ZONE",
                        help="IANA zone whose calendar days count (default UTC)")
    parser.add_argument("--shop", type=shop_argument, help="one shop only")


def report_refunds(args: argparse.Namespace) -> int:
    try:
        period = report_params.interval(args.from_date, args.to_date, args.tz)
        currency = report_params.currency_filter(args.currency)
    except BadParameter as bad:
        return _bad_value("report refunds", bad)
    with session_factory(Settings.from_env())() as session:
        report = reports.finance_report(period, shop=args.shop, currency=currency,
                                        session=session)
    if args.format == report_params.ReportFormat.CSV:
        sys.stdout.write(reports.csv_text(report.rows))
    else:
        _print_json(FinanceReportView.model_validate(report).model_dump(mode="json",
                                                                          by_alias=True))
    return 0


def report_reasons(args: argparse.Namespace) -> int:
    try:
        period = report_params.interval(args.from_date, args.to_date, args.tz)
    except BadParameter as bad:
        return _bad_value("report reasons", bad)
    with session_factory(Settings.from_env())() as session:
        report = reasons.reasons_report(period, shop=args.shop, session=session)
    _print_json(ReasonsReportView.model_validate(report).model_dump(mode="json", by_alias=True))
    return 0


def _bad_value(command: str, bad: BadParameter) -> int:
    """The parser's own one line and exit status: the values are checked together (from
    before to) by the function the API uses, so after parsing."""
    print(f"refund-sink: error: {command}: {bad}", file=sys.stderr)
    return 2


def _print_json(view: dict[str, Any]) -> None:
    print(json.dumps(view, ensure_ascii=False, indent=2))
