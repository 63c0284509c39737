"""`refund-sink reconcile (--shop DOMAIN | --all-shops) [--since TIME | --window DURATION]
[--order ID ...] [--apply] [--json] [--every DURATION]`: compare a registered shop's refunds at
Genstore with the local record (genstore_api.reconcile) and, with `--apply`, queue what
webhooks never delivered. Each shop's run is recorded (`reconcile_runs`, and the shop's last
run on its row) and logged in one line.

The schedule is `--all-shops --window 48h --every 15m --apply`: every registered shop in turn
over the moving window, the shops listed again each round (none registered: the round does
nothing), one shop's failure reported and the others reconciled all the same; `--every` loops
until SIGTERM or SIGINT, which end the sleep at once, or the round after the shop in hand.
A deploy runs it as a CronJob without `--every`, or as a looping compose service.

One round that fails, for a shop or for several, still prints what it found and ends with a
one-line error (exit 1); a failed round of the loop is reported on stderr and the next one runs
`--every` later."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import sqlalchemy.exc
from cryptography.fernet import MultiFernet

from genstore_api.client import GenstoreClient
from genstore_api.reconcile import Finding, Outcome, Report, apply, reconcile
from refund_sink.operations import CommandError, duration_argument, shop_argument
from refund_sink.shop_commands import keys_of, settings_with_key
from refunds import logs, reconcile_runs, shops
from refunds.db import describe, session_factory
from refunds.delivery import RawDelivery
from refunds.settings import ConfigError, Settings

log = logging.getLogger("refund_sink.reconcile")


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "reconcile", help="compare a shop's refunds at Genstore with the local record")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--shop", type=shop_argument)
    which.add_argument("--all-shops", action="store_true",
                       help="every registered shop, one after the other")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--since", type=_since, metavar="TIME",
                        help="window start: an ISO 8601 time (UTC without an offset) or an "
                             "age such as 24h or 7d; default: every order the sink has seen, "
                             "and Genstore's whole order list")
    window.add_argument("--window", type=duration_argument, metavar="DURATION",
                        help="window start: DURATION (such as 48h) before each round's start")
    parser.add_argument("--order", action="append", default=[], metavar="ID",
                        help="an order to check as well (repeatable)")
    parser.add_argument("--apply", action="store_true",
                        help="queue each missing or differing refund as a pulled delivery")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object on stdout (with --all-shops, an array a round)")
    parser.add_argument("--every", type=duration_argument, metavar="DURATION",
                        help="another round after each DURATION (such as 15m) until SIGTERM "
                             "or SIGINT; default: one round")
    parser.set_defaults(handler=reconcile_command)


def _since(text: str) -> datetime:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC) - duration_argument(text)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class _Stop:
    """Set by SIGTERM or SIGINT while the loop runs."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))


def reconcile_command(args: argparse.Namespace) -> int:
    settings = settings_with_key()
    if args.all_shops:  # the scheduled form: its per-run log events go to stderr
        logs.configure()
    stop = _Stop()
    if args.every is None:
        return one_round(args, settings, stop)
    stop.install()
    while not stop.requested:
        try:
            one_round(args, settings, stop)
        except (CommandError, ConfigError) as error:
            print(f"refund-sink: error: {error}", file=sys.stderr, flush=True)
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"refund-sink: reconcile: database error: {describe(error)}",
                  file=sys.stderr, flush=True)
        stop.sleep(args.every.total_seconds())
    return 0


def one_round(args: argparse.Namespace, settings: Settings, stop: _Stop) -> int:
    """Reconcile the shop, or every registered shop until a stop is asked for; CommandError
    naming each shop that failed."""
    factory = session_factory(settings)
    since = args.since if args.window is None else datetime.now(UTC) - args.window
    if not args.all_shops:
        report = reconcile_shop(args.shop, settings=settings, keys=keys_of(settings),
                                since=since, orders=args.order, apply_found=args.apply)
        show(report, as_json=args.json)
        if report.outcome is not Outcome.OK:
            raise CommandError(f"reconcile: {report.outcome.value}: {report.error}")
        return 0
    with factory() as session:
        domains = [shop.domain for shop in shops.listing(session=session)]
    if not domains:  # nothing to do, and no key needed
        if args.json:
            print("[]", flush=True)
        return 0
    keys = keys_of(settings)
    reports, failed = [], []
    for domain in domains:
        if stop.requested:
            break
        try:
            report = reconcile_shop(domain, settings=settings, keys=keys, since=since,
                                    orders=args.order, apply_found=args.apply)
        except Exception as error:  # one shop's failure never stops the others
            log.error("reconcile %s: failed: %s", domain, describe(error))
            failed.append(f"{domain} ({describe(error)})")
            continue
        reports.append(report)
        if report.outcome is not Outcome.OK:
            failed.append(f"{domain} ({report.outcome.value})")
        if not args.json:
            show(report, as_json=False)
    if args.json:
        print(json.dumps([report.as_json() for report in reports], ensure_ascii=False,
                         indent=2), flush=True)
    if failed:
        raise CommandError(f"reconcile: {len(failed)} of {len(domains)} shops failed: "
                           + ", ".join(failed))
    return 0


def reconcile_shop(domain: str, *, settings: Settings, keys: MultiFernet,
                   since: datetime | None, orders: list[str], apply_found: bool) -> Report:
    """One shop's run, recorded (`reconcile_runs` and the shop's last run) and logged.
    CommandError when the shop is not registered; raises what publishing raises (then the
    run is not recorded: nothing says what was applied)."""
    factory = session_factory(settings)
    now = datetime.now(UTC)
    with factory() as session:
        token = shops.access_token(domain, keys=keys, session=session)
    if token is None:
        raise CommandError(f"shop {domain} is not registered: "
                           "refund-sink shop add DOMAIN --access-token-file FILE")
    client = GenstoreClient(domain, token, base_url=settings.genstore_api_url)
    try:
        with factory() as session:
            report = reconcile(client, session=session, since=since, orders=orders,
                               now=now, naive_tz=settings.naive_tz)
    finally:
        client.close()
    if apply_found:
        apply(report, _publisher(settings), now=now)
    found = reconcile_runs.Found(len(report.missing), len(report.differs),
                                 len(report.only_local), report.applied)
    with factory.begin() as session:
        shops.record_reconcile(domain, report.outcome.value, at=now, session=session)
        reconcile_runs.record(domain, report.outcome.value, found, started_at=now,
                              finished_at=datetime.now(UTC), error=report.error,
                              session=session)
    log.info("reconcile %s: %s, %d orders checked, %d missing, %d differ, %d only local, %d "
             "applied", report.shop, report.outcome.value, len(report.checked_orders),
             found.missing, found.differs, found.only_local, found.applied)
    return report


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
