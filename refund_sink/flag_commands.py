"""`refund-sink flags list|check`: risk flags at a terminal, and the periodic check that raises
`stuck_in_progress`, the one rule that trips with the clock rather than with a delivery (the
deploy files run it every 15 minutes: a CronJob, or a compose service with `--every 15m`)."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from refund_sink.operations import duration_argument, shop_argument
from refund_sink.rounds import once_or_every
from refunds import flags, metrics
from refunds.db import session_factory
from refunds.risk_rules import Rule
from refunds.settings import Settings
from schemas.flags import FlagView

PAGE = 1000  # refunds flagged per transaction


def add_command(commands: Any) -> None:
    group = commands.add_parser("flags", help="risk flags")
    flag_commands = group.add_subparsers(dest="flags_command", required=True)
    listing = flag_commands.add_parser("list", help="flags in the order they were raised")
    listing.add_argument("--state", choices=flags.STATES)
    listing.add_argument("--rule", choices=[rule.value for rule in Rule])
    listing.add_argument("--shop", type=shop_argument)
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    listing.set_defaults(handler=flags_list)
    check = flag_commands.add_parser(
        "check", help="raise stuck_in_progress on refunds in progress for too long")
    check.add_argument("--every", type=duration_argument, metavar="DURATION",
                       help="check again after each DURATION (such as 15m) until stopped; "
                            "default: once")
    check.set_defaults(handler=flags_check)


def flags_list(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        views = [FlagView.model_validate(row).model_dump(mode="json") for row in flags.find(
            session=session, shop=args.shop, state=args.state, rule=args.rule)]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':>6}  {'STATE':<12} {'RULE':<22} {'RAISED':<32} {'SHOP':<24} REFUND")
    for view in views:
        print(f"{view['id']:>6}  {view['state']:<12} {view['rule']:<22} {view['raised_at']:<32} "
              f"{view['shop']:<24} {view['refund_id']}")
    return 0


def flags_check(args: argparse.Namespace) -> int:
    """Once, or every `--every` until stopped (`refund_sink.rounds`)."""
    settings = Settings.from_env()
    if not settings.risk_rules.stuck_in_progress.enabled:
        print("stuck_in_progress is off (REFUND_SINK_RISK_RULES): nothing to check")
        return 0
    return once_or_every(args.every, lambda: check_once(settings), "flags check")


def check_once(settings: Settings) -> int:
    """`flags.check_stuck` a page per transaction until a page is not full; how many refunds
    it flagged. Each page is counted once committed."""
    params, total = settings.risk_rules.stuck_in_progress, 0
    while True:
        with session_factory(settings).begin() as session:
            raised = flags.check_stuck(params, session=session, now=datetime.now(UTC),
                                       limit=PAGE)
        metrics.count_flags(Rule.STUCK_IN_PROGRESS for _ in raised)
        total += len(raised)
        if len(raised) < PAGE:
            print(f"stuck_in_progress raised on {total} refunds", flush=True)
            return total
