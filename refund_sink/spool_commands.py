"""`refund-sink spool list|retry`: what waits in the ingest's spool, and quarantined files sent
again once fixed. Runs where the spool is (`REFUND_SINK_SPOOL_DIR`); never shows a body."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from broker.spool import Spool, read
from refund_sink.operations import CommandError
from refunds.settings import Settings


def add_command(commands: Any) -> None:
    spool = commands.add_parser("spool", help="deliveries waiting in the ingest's spool")
    spool_commands = spool.add_subparsers(dest="spool_command", required=True)
    listing = spool_commands.add_parser("list", help="pending, claimed and quarantined files")
    listing.add_argument("--json", action="store_true", help="a JSON array on stdout")
    listing.set_defaults(handler=spool_list)
    retry = spool_commands.add_parser("retry", help="send quarantined files again")
    target = retry.add_mutually_exclusive_group(required=True)
    target.add_argument("names", nargs="*", default=[], metavar="NAME")
    target.add_argument("--all", action="store_true", help="every quarantined file")
    retry.set_defaults(handler=spool_retry)


def spool_list(args: argparse.Namespace) -> int:
    spool, now = Spool(Settings.from_env().spool_dir), time.time()
    found = (_view(state, path, now) for state, path in spool.files())
    views = [view for view in found if view is not None]
    if args.json:
        print(json.dumps(views, ensure_ascii=False, indent=2))
        return 0
    print(f"{'STATE':<11} {'AGE_S':>7} {'BYTES':>8}  {'FILE':<58} SHOP / TOPIC / DELIVERY")
    for view in views:
        about = (f"{view['shop']} {view['topic']} {view['delivery_id']}"
                 if view["problem"] is None else f"unreadable: {view['problem']}")
        age = "-" if view["age_seconds"] is None else view["age_seconds"]
        print(f"{view['state']:<11} {age:>7} {view['bytes']:>8}  {view['file']:<58} {about}")
    return 0


def spool_retry(args: argparse.Namespace) -> int:
    """Move the files back to pending/, then send the spool to the broker at once: an ingest's
    drainer runs only while that process spools, so a moved file could wait for days."""
    settings = Settings.from_env()
    spool = Spool(settings.spool_dir)
    names: list[str] = spool.quarantined() if args.all else args.names
    moved = [name for name in names if spool.retry(name)]
    for name in moved:
        print(f"moved {name} to pending")
    if moved:
        _send(spool, settings)
    problems = [f"{name}: not in quarantine" for name in names if name not in moved]
    problems += [f"{name}: still not a delivery, back in quarantine"
                 for name in moved if name in spool.quarantined()]
    if problems:
        raise CommandError("could not retry " + "; ".join(problems))
    return 0


def _send(spool: Spool, settings: Settings) -> None:
    from broker.app import make_celery
    from broker.publish import publish

    celery = make_celery(settings)
    try:
        sent = spool.drain(lambda delivery: publish(celery, delivery))
    except Exception as error:  # whatever the transport raises: the files stay in pending/
        raise CommandError(f"broker unreachable ({type(error).__name__}); what is pending "
                           "waits for an ingest to send it") from None
    print(f"sent {sent} deliveries to the broker")


def _view(state: str, path: Path, now: float) -> dict[str, Any] | None:
    """What a file holds, for readable ones; None if it was sent or moved meanwhile."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    delivery, problem = None, None
    try:
        delivery = read(path)
    except (OSError, ValueError) as error:
        problem = type(error).__name__
    stamp = path.name.partition("-")[0]  # put() names a file for the time it was spooled
    return {
        "state": state,
        "file": path.name,
        "age_seconds": round(now - int(stamp) / 1e9) if stamp.isdigit() else None,
        "bytes": size,
        "delivery_id": delivery and delivery.delivery_id,
        "shop": delivery and delivery.shop,
        "topic": delivery and delivery.topic,
        "problem": problem,
    }
