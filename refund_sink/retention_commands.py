"""`refund-sink retention apply [--every DURATION]`: drop the raw bodies of applied deliveries
older than `REFUND_SINK_RAW_RETENTION_DAYS` (`refunds.retention`). The deploy files run it
daily: a CronJob, or a compose service with `--every 1d`. Without the variable it drops
nothing and says so."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from refund_sink.operations import duration_argument
from refund_sink.rounds import once_or_every
from refunds import retention
from refunds.db import session_factory
from refunds.settings import Settings


def add_command(commands: Any) -> None:
    group = commands.add_parser("retention", help="raw-body retention")
    actions = group.add_subparsers(dest="retention_command", required=True)
    apply = actions.add_parser(
        "apply", help="drop raw bodies of applied deliveries past REFUND_SINK_RAW_RETENTION_DAYS")
    apply.add_argument("--every", type=duration_argument, metavar="DURATION",
                       help="apply again after each DURATION (such as 1d) until stopped; "
                            "default: once")
    apply.set_defaults(handler=retention_apply)


def retention_apply(args: argparse.Namespace) -> int:
    """Once, or every `--every` until stopped (`refund_sink.rounds`)."""
    settings = Settings.from_env()
    if not settings.raw_retention_days:
        print("REFUND_SINK_RAW_RETENTION_DAYS is not set: raw bodies are kept")
        return 0
    return once_or_every(args.every, lambda: apply_once(settings), "retention apply")


def apply_once(settings: Settings) -> retention.Dropped:
    """A page per transaction until neither table fills one; the totals, printed."""
    now, archived, letters = datetime.now(UTC), 0, 0
    while True:
        with session_factory(settings).begin() as session:
            page = retention.drop_page(session=session, days=settings.raw_retention_days,
                                       now=now)
        archived, letters = archived + page.raw_deliveries, letters + page.dead_letters
        if max(page.raw_deliveries, page.dead_letters) < retention.PAGE:
            break
    print(f"raw bodies dropped: {archived} archived deliveries, {letters} resolved dead "
          f"letters (older than {settings.raw_retention_days} days)")
    return retention.Dropped(archived, letters)
