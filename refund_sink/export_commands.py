"""`refund-sink export customer --shop D (--customer ID | --email E) [--out FILE]`: one
customer's data as a JSON file the operator can hand over, the answer to a
`customers/data_request` (whose log event names this command). Written to FILE (created
readable by its owner only: it holds contact details) or to stdout."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from refund_sink.operations import shop_argument
from refunds import customer_data
from refunds.db import session_factory
from refunds.settings import Settings


def add_command(commands: Any) -> None:
    group = commands.add_parser("export", help="data exports for compliance requests")
    kinds = group.add_subparsers(dest="export_command", required=True)
    customer = kinds.add_parser("customer", help="a customer's refunds, messages and deliveries")
    customer.add_argument("--shop", type=shop_argument, required=True)
    customer.add_argument("--customer", dest="customer_id", metavar="ID",
                          help="the customer's id")
    customer.add_argument("--email", help="the customer's e-mail (with or instead of --customer)")
    customer.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    customer.set_defaults(handler=export_customer)


def export_customer(args: argparse.Namespace) -> int:
    if not args.customer_id and not args.email:
        print("refund-sink: export customer: give --customer ID or --email", file=sys.stderr)
        return 2
    with session_factory(Settings.from_env())() as session:
        data = customer_data.export(args.shop, customer_id=args.customer_id or None,
                                    email=args.email or None, session=session,
                                    now=datetime.now(UTC))
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    print(f"{len(data['refunds'])} refunds of customer "
          f"{args.customer_id or '(by e-mail)'} written to {args.out}")
    return 0
