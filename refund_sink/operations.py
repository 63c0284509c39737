"""Operator commands: `db upgrade`, `token create|list|revoke`, `dlq list|show|requeue`."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import migrations
from refunds import dead_letters, queries, tokens
from refunds.db import session_factory
from refunds.delivery import shop_key
from refunds.settings import Settings
from schemas.api import DeadLetterDetail, DeadLetterView, TokenView


class CommandError(Exception):
    """A command's own one-line failure (not found, bad scope, nothing published)."""


def add_commands(commands: Any) -> None:
    _add_db(commands)
    _add_token(commands)
    _add_dlq(commands)


def _add_db(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply migrations").set_defaults(handler=db_upgrade)


def _add_token(commands: Any) -> None:
    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token (printed once)")
    create.add_argument("--scopes", required=True, type=_scopes,
                        help="read_refunds[,write_refunds]")
    create.add_argument("--name")
    create.add_argument("--shop", type=shop_argument, help="the one shop the token may see")
    create.add_argument("--expires-in", type=duration_argument, metavar="DURATION",
                        help="lifetime such as 30d, 12h, 45m (default: no expiry)")
    create.set_defaults(handler=token_create)
    listing = token_commands.add_parser("list", help="tokens, never their values")
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    listing.set_defaults(handler=token_list)
    revoke = token_commands.add_parser("revoke", help="stop a token from working")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=token_revoke)


def _scopes(text: str) -> list[str]:
    try:
        return tokens.parse_scopes(text)
    except tokens.UnknownScope as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def shop_argument(text: str) -> str:
    shop = shop_key(text)
    if shop is None:
        raise argparse.ArgumentTypeError("shop must not be blank")
    return shop


def duration_argument(text: str) -> timedelta:
    try:
        return tokens.parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_dlq(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="dead letters")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_commands.add_parser("list", help="list dead letters")
    listing.add_argument("--reason", choices=dead_letters.REASONS)
    listing.add_argument("--state", choices=dead_letters.STATES)
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    listing.set_defaults(handler=dlq_list)
    show = dlq_commands.add_parser("show", help="one dead letter in full")
    show.add_argument("id", type=int)
    show.set_defaults(handler=dlq_show)
    requeue = dlq_commands.add_parser("requeue", help="send dead letters through again")
    target = requeue.add_mutually_exclusive_group(required=True)
    target.add_argument("ids", nargs="*", type=int, default=[])
    target.add_argument("--all", action="store_true", help="every letter in state dead")
    requeue.add_argument("--reason", choices=dead_letters.REASONS)
    requeue.set_defaults(handler=dlq_requeue)


def upgrade_database(settings: Settings, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, revision)


def db_upgrade(_args: argparse.Namespace) -> int:
    upgrade_database(Settings.from_env())
    print("database is at the latest migration")
    return 0


def token_create(args: argparse.Namespace) -> int:
    expires_at = datetime.now(UTC) + args.expires_in if args.expires_in else None
    with session_factory(Settings.from_env()).begin() as session:
        token = tokens.create(args.scopes, name=args.name, shop=args.shop,
                              expires_at=expires_at, session=session)
    print(token)
    return 0


def token_list(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        views = [TokenView.model_validate(row).model_dump(mode="json")
                 for row in tokens.listing(session=session)]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':>4}  {'NAME':<16} {'SCOPES':<28} {'SHOP':<24} {'EXPIRES':<25} REVOKED")
    for view in views:
        print(f"{view['id']:>4}  {view['name'] or '-':<16} {','.join(view['scopes']):<28} "
              f"{view['shop'] or '(every shop)':<24} {view['expires_at'] or 'never':<25} "
              f"{view['revoked_at'] or '-'}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env()).begin() as session:
        revoked = tokens.revoke(args.id, session=session)
    if revoked is tokens.Revoked.NOT_FOUND:
        raise CommandError(f"no token with id {args.id}")
    print(f"revoked token {args.id}" if revoked is tokens.Revoked.NOW
          else f"token {args.id} was already revoked")
    return 0


def dlq_list(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        letters = dead_letters.find(session=session, reason=args.reason, state=args.state,
                                    limit=None)
        views = [DeadLetterView.model_validate(row).model_dump(mode="json") for row in letters]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'ID':>6}  {'STATE':<9} {'REASON':<18} {'ATTEMPTS':>8}  {'LAST FAILED':<25} DELIVERY")
    for view in views:
        print(
            f"{view['id']:>6}  {view['state']:<9} {view['reason']:<18} {view['attempts']:>8}  "
            f"{view['last_failed_at']:<25} {view['delivery_id']}"
        )
    return 0


def dlq_show(args: argparse.Namespace) -> int:
    with session_factory(Settings.from_env())() as session:
        letter = queries.dead_letter(args.id, shop=None, session=session)
        if letter is None:
            raise CommandError(f"no dead letter with id {args.id}")
        detail = DeadLetterDetail.model_validate(letter).model_dump(mode="json")
        detail["body"] = letter.body.decode("utf-8", errors="replace")
    print(json.dumps(detail, ensure_ascii=False, indent=2))
    return 0


def dlq_requeue(args: argparse.Namespace) -> int:
    from broker.app import make_celery
    from broker.publish import publish

    settings = Settings.from_env()
    celery = make_celery(settings)
    result = dead_letters.requeue(
        session_factory(settings),
        lambda delivery: publish(celery, delivery),
        ids=[letter_id for letter_id in args.ids if queries.in_id_range(letter_id)],
        reason=args.reason,
    )
    result.not_found += [i for i in args.ids if not queries.in_id_range(i)]
    for letter_id in result.requeued:
        print(f"requeued {letter_id}")
    for letter_id in result.already_resolved:
        print(f"skipped {letter_id}: already resolved")
    problems = [f"{i}: not found" for i in result.not_found]
    problems += [f"{i}: broker unreachable, left dead" for i in result.failed]
    if problems:
        raise CommandError("could not requeue " + "; ".join(problems))
    return 0
