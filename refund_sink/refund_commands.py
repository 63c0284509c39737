"""`refund-sink refunds show ID [--shop S] [--json]`: a refund and its timeline, for a person at
a terminal (or, with --json, the same object `GET /refunds/<id>/events` returns)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from refund_sink.operations import CommandError, shop_argument
from refunds import flags, queries
from refunds.db import session_factory
from refunds.settings import Settings
from refunds.timeline import timeline
from schemas.api import RefundView
from schemas.timeline import EventView, TimelineView


def add_command(commands: Any) -> None:
    refunds = commands.add_parser("refunds", help="look refunds up")
    refund_commands = refunds.add_subparsers(dest="refunds_command", required=True)
    show = refund_commands.add_parser("show", help="a refund and every delivery that reached it")
    show.add_argument("id", metavar="ID")
    show.add_argument("--shop", type=shop_argument, help="needed when the id is in several shops")
    show.add_argument("--json", action="store_true", help="the API's JSON object on stdout")
    show.set_defaults(handler=refunds_show)


def refunds_show(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        try:
            found = queries.refund(args.id, shop=args.shop, session=session)
        except queries.AmbiguousRefund as ambiguous:
            raise CommandError(f"refund {args.id} is in several shops "
                               f"({', '.join(ambiguous.shops)}); name one with --shop") from None
        if found is None:
            raise CommandError(f"no refund with id {args.id}")
        key = (found.shop, found.refund_id)
        open_flags = flags.open_rules([key], session=session).get(key, [])
        shown = TimelineView(
            refund=RefundView.model_validate(found).model_copy(update={"flags": open_flags}),
            events=[EventView.model_validate(event)
                    for event in timeline(found.shop, found.refund_id, session=session)])
    if args.json:
        print(json.dumps(shown.model_dump(mode="json"), ensure_ascii=False, indent=2))
    else:
        print(_as_text(shown))
    return 0


def _as_text(shown: TimelineView) -> str:
    refund = shown.refund.model_dump(mode="json")
    lines = [f"refund {refund['id']} (shop {refund['shop']}, order {refund['order_id']})",
             f"  status     {refund['status']}"
             + (f" at {refund['refunded_at']}" if refund["refunded_at"] else ""),
             f"  price      {refund['refund_price']} {refund['currency'] or ''}".rstrip(),
             f"  created    {refund['created_at']}",
             f"  updated    {refund['updated_at']} ({refund['events_applied']} messages)",
             f"  flags      {', '.join(refund['flags']) or 'none open'}",
             "",
             f"{'OCCURRED':<26} {'KIND':<12} {'PRICE':>12}  {'EFFECT':<18} {'ORIGIN':<9} "
             f"{'RECEIVED':<26} DELIVERY"]
    for event in shown.events:
        row = event.model_dump(mode="json")
        lines.append(f"{row['occurred_at'] or '-':<26} {row['kind'] or '-':<12} "
                     f"{row['price'] or '-':>12}  {row['effect']:<18} {row['origin']:<9} "
                     f"{row['received_at']:<26} {row['delivery_id']}")
    return "\n".join(lines)
