"""`refund-sink shop add|list|remove`: the shops the sink reconciles, each with its Genstore
access token. The token is read from a file, never from the command line (where `ps` and the
shell history would keep it), and no command prints it."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import MultiFernet

from refund_sink.operations import CommandError, shop_argument
from refund_sink.state_folder import DATA_DIR
from refunds import shops
from refunds.db import session_factory
from refunds.settings import Settings

SECRET_KEY_FILE = DATA_DIR / "secret-key"  # written by `refund-sink run` (refund_sink.embedded)


def add_command(commands: Any) -> None:
    group = commands.add_parser("shop", help="shops and their Genstore access tokens")
    shop_commands = group.add_subparsers(dest="shop_command", required=True)
    add = shop_commands.add_parser("add", help="register a shop, or replace its token")
    add.add_argument("domain", type=shop_argument)
    add.add_argument("--access-token-file", required=True, type=Path, metavar="FILE",
                     help="a file holding the shop's Admin API access token")
    add.set_defaults(handler=shop_add)
    listing = shop_commands.add_parser("list", help="registered shops, never their tokens")
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    listing.set_defaults(handler=shop_list)
    remove = shop_commands.add_parser("remove", help="forget a shop and its token")
    remove.add_argument("domain", type=shop_argument)
    remove.set_defaults(handler=shop_remove)
    shop_commands.add_parser(
        "rotate-key", help="re-encrypt every token under the first REFUND_SINK_SECRET_KEY key"
    ).set_defaults(handler=shop_rotate_key)


def settings_with_key() -> Settings:
    """The environment's settings; without REFUND_SINK_SECRET_KEY, the key `refund-sink run`
    generated in this folder, if any."""
    if not os.environ.get("REFUND_SINK_SECRET_KEY") and SECRET_KEY_FILE.exists():
        os.environ["REFUND_SINK_SECRET_KEY"] = SECRET_KEY_FILE.read_text().strip()
    return Settings.from_env()


def keys_of(settings: Settings) -> MultiFernet:
    return shops.cipher(settings.secret_keys)


def shop_add(args: argparse.Namespace) -> int:
    settings = settings_with_key()
    keys = keys_of(settings)
    token = args.access_token_file.read_text().strip()
    if not token:
        raise CommandError(f"{args.access_token_file} is empty: it must hold the access token")
    with session_factory(settings).begin() as session:
        added = shops.add(args.domain, token, keys=keys, now=datetime.now(UTC), session=session)
    print(f"added shop {args.domain}" if added is shops.Added.NEW
          else f"replaced the access token of shop {args.domain}")
    return 0


def shop_list(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        views = [shops.view(shop) for shop in shops.listing(session=session)]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'DOMAIN':<40} {'ADDED':<33} {'LAST RECONCILED':<33} OUTCOME")
    for view in views:
        print(f"{view['domain']:<40} {view['added_at']:<33} "
              f"{view['last_reconciled_at'] or 'never':<33} "
              f"{view['last_reconcile_outcome'] or '-'}")
    return 0


def shop_remove(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env()).begin() as session:
        removed = shops.remove(args.domain, session=session)
    if not removed:
        raise CommandError(f"no shop {args.domain}")
    print(f"removed shop {args.domain}")
    return 0


def shop_rotate_key(_args: argparse.Namespace) -> int:
    settings = settings_with_key()
    keys = keys_of(settings)
    with session_factory(settings).begin() as session:
        count = shops.rotate(keys=keys, session=session)
    print(f"re-encrypted {count} access token(s) under the first key: the others can go")
    return 0
