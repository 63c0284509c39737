"""`refund-sink shop add|list|remove|rotate-key|refresh|set|recompute`: the shops the sink acts
for, each with its Genstore access token, time zone and currency. The token is read from a
file, never from the command line (where `ps` and the shell history would keep it), and no
command prints it.

A shop's zone and currency come from Genstore's `shops/info` when it is added and on `refresh`,
or by hand (`set`); a change of either reads the shop's stored messages again and folds its
refunds again at once (`refunds.shop_clock`), so no separate step is needed. `recompute` does
that alone, e.g. after GENSTORE_NAIVE_TZ changed for shops without a zone."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.fernet import MultiFernet

from genstore_api.client import GenstoreClient, GenstoreError, Retries
from refund_sink.operations import CommandError, shop_argument
from refund_sink.state_folder import DATA_DIR
from refunds import shop_clock, shops
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
    refresh = shop_commands.add_parser(
        "refresh", help="read the zone and currency of one shop (or all) from Genstore")
    refresh.add_argument("domain", nargs="?", type=shop_argument)
    refresh.set_defaults(handler=shop_refresh)
    set_clock = shop_commands.add_parser(
        "set", help="set a shop's time zone (and currency) by hand")
    set_clock.add_argument("domain", type=shop_argument)
    set_clock.add_argument("--timezone", required=True, type=_zone_argument, metavar="AREA/CITY")
    set_clock.add_argument("--currency", type=_currency_argument, metavar="CODE")
    set_clock.set_defaults(handler=shop_set)
    recompute = shop_commands.add_parser(
        "recompute", help="read a shop's stored messages again in its zone and refold them")
    recompute.add_argument("domain", type=shop_argument)
    recompute.set_defaults(handler=shop_recompute)


def _zone_argument(text: str) -> str:
    try:
        return shops.checked_zone(text.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _currency_argument(text: str) -> str:
    try:
        return shops.checked_currency(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
    try:
        _refresh(args.domain, settings=settings, keys=keys)
    except GenstoreError as error:
        print(f"warning: the zone and currency of {args.domain} were not read ({error}): "
              f"its naive times are read in GENSTORE_NAIVE_TZ until `refund-sink shop refresh "
              f"{args.domain}` or `refund-sink shop set {args.domain} --timezone AREA/CITY`",
              file=sys.stderr)
    return 0


def shop_refresh(args: argparse.Namespace) -> int:
    """Each shop's clock from Genstore; a shop whose answer fails is named and skipped, and
    the command fails at the end if any did."""
    settings = settings_with_key()
    keys = keys_of(settings)
    with session_factory(settings)() as session:
        domains = [args.domain] if args.domain else list(shops.registered(session=session))
    failed = []
    for domain in domains:
        try:
            _refresh(domain, settings=settings, keys=keys)
        except GenstoreError as error:
            print(f"{domain}: not refreshed: {error}", file=sys.stderr)
            failed.append(domain)
    if failed:
        raise CommandError(f"{len(failed)} of {len(domains)} shop(s) not refreshed")
    return 0


def _refresh(domain: str, *, settings: Settings, keys: MultiFernet) -> None:
    """Read the shop's `shops/info` and set its clock (`_change`). GenstoreError when the
    answer fails or holds an unknown zone or a malformed currency."""
    with session_factory(settings)() as session:
        token = shops.access_token(domain, keys=keys, session=session)
    if token is None:
        raise CommandError(f"no shop {domain}")
    client = GenstoreClient(domain, token, base_url=settings.genstore_api_url,
                            retries=Retries(max_attempts=2))
    try:
        info = client.shop_info()
    finally:
        client.close()
    try:
        clock = shops.Clock(
            None if info.iana_timezone is None else shops.checked_zone(info.iana_timezone),
            None if info.currency is None else shops.checked_currency(info.currency))
    except ValueError as error:
        raise GenstoreError(f"{domain}: shops/info: {error}") from None
    _change(domain, clock, settings=settings)


def shop_set(args: argparse.Namespace) -> int:
    _change(args.domain, shops.Clock(args.timezone, args.currency),
            settings=Settings.from_env())
    return 0


def _change(domain: str, clock: shops.Clock, *, settings: Settings) -> None:
    with session_factory(settings).begin() as session:
        done = shop_clock.change(domain, clock, naive_tz=settings.naive_tz,
                                 now=datetime.now(UTC), session=session)
        if done is None:
            raise CommandError(f"no shop {domain}")
        now = shops.registered(session=session)[domain]
    print(f"shop {domain}: zone {now.zone or '-'}, currency {now.currency or '-'}; "
          f"{_recomputed(done)}")


def shop_recompute(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    with session_factory(settings).begin() as session:
        if args.domain not in shops.registered(session=session):
            raise CommandError(f"no shop {args.domain}")
        done = shop_clock.recompute(args.domain, naive_tz=settings.naive_tz,
                                    now=datetime.now(UTC), session=session)
    print(f"shop {args.domain}: {_recomputed(done)}")
    return 0


def _recomputed(done: shop_clock.Recomputed) -> str:
    unreadable = (f", {done.unreadable} message(s) without a readable archived body kept as "
                  "they were" if done.unreadable else "")
    return (f"{done.refunds} refund(s) changed ({done.messages} message(s) read again"
            f"{unreadable})")


def shop_list(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        views = [shops.view(shop) for shop in shops.listing(session=session)]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'DOMAIN':<40} {'ZONE':<24} {'CUR':<4} {'ADDED':<33} {'LAST RECONCILED':<33} "
          "OUTCOME")
    for view in views:
        print(f"{view['domain']:<40} {view['iana_timezone'] or '-':<24} "
              f"{view['currency'] or '-':<4} {view['added_at']:<33} "
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
