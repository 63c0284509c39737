"""`refund-sink reconcile --shop DOMAIN [--since TIME] [--order ID ...] [--apply] [--json]`:
compare a registered shop's refunds at Genstore with the local record (genstore_api.reconcile)
and, with `--apply`, queue what webhooks never delivered. A run that fails part-way prints
what it found, records the outcome on the shop, and ends with a one-line error (exit 1)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from genstore_api.client import GenstoreClient
from genstore_api.reconcile import Finding, Outcome, Report, apply, reconcile
from refund_sink.operations import CommandError, _duration, shop_argument
from refund_sink.shop_commands import keys_of, settings_with_key
from refunds import shops
from refunds.db import session_factory
from refunds.delivery import RawDelivery
from refunds.settings import Settings

log = logging.getLogger("refund_sink.reconcile")


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "reconcile", help="compare a shop's refunds at Genstore with the local record")
    parser.add_argument("--shop", required=True, type=shop_argument)
    parser.add_argument("--since", type=_since, metavar="TIME",
                        help="window start: an ISO 8601 time (UTC without an offset) or an "
                             "age such as 24h or 7d; default: every order the sink has seen, "
                             "and Genstore's whole order list")
    parser.add_argument("--order", action="append", default=[], metavar="ID",
                        help="an order to check as well (repeatable)")
    parser.add_argument("--apply", action="store_true",
                        help="queue each missing or differing refund as a pulled delivery")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(handler=reconcile_command)


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC) - _duration(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def reconcile_command(args: argparse.Namespace) -> int:
    settings = settings_with_key()
    keys = keys_of(settings)
    factory = session_factory(settings)
    now = datetime.now(UTC)
    with factory() as session:
        token = shops.access_token(args.shop, keys=keys, session=session)
    if token is None:
        raise CommandError(f"shop {args.shop} is not registered: "
                           "refund-sink shop add DOMAIN --access-token-file FILE")
    client = GenstoreClient(args.shop, token, base_url=settings.genstore_api_url)
    try:
        with factory() as session:
            report = reconcile(client, session=session, since=args.since, orders=args.order,
                               now=now, naive_tz=settings.naive_tz)
    finally:
        client.close()
    if args.apply:
        apply(report, _publisher(settings), now=now)
    with factory.begin() as session:
        shops.record_reconcile(args.shop, report.outcome.value, at=now, session=session)
    log.info("reconcile %s: %s, %d orders checked, %d missing, %d differ, %d only local, %d "
             "applied", report.shop, report.outcome.value, len(report.checked_orders),
             len(report.missing), len(report.differs), len(report.only_local), report.applied)
    show(report, as_json=args.json)
    if report.outcome is not Outcome.OK:
        raise CommandError(f"reconcile: {report.outcome.value}: {report.error}")
    return 0


def _publisher(settings: Settings) -> Callable[[RawDelivery], str]:
    from broker.app import make_celery
    from broker.publish import publish

    celery = make_celery(settings)
    return lambda delivery: publish(celery, delivery)


def show(report: Report, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
        return
    print(f"shop {report.shop}: {len(report.checked_orders)} orders checked, "
          f"{len(report.missing)} missing, {len(report.differs)} differ, "
          f"{len(report.only_local)} only local, {report.applied} applied")
    rows = [("missing", f) for f in report.missing] + [("differs", f) for f in report.differs]
    rows += [("only_local", f) for f in report.only_local]
    if rows:
        print(f"{'KIND':<11} {'ORDER':<20} {'REFUND':<20} {'GENSTORE':<26} LOCAL")
    for kind, finding in rows:
        print(f"{kind:<11} {finding.order_id or '-':<20} {finding.refund_id:<20} "
              f"{_side(finding, 'genstore'):<26} {_side(finding, 'local')}")


def _side(finding: Finding, name: str) -> str:
    side = getattr(finding, name)
    if side is None:
        return "-"
    return f"{side.status or '?'} {side.refund_price if side.refund_price is not None else '?'}"
