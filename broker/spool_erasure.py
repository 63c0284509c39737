"""The spool's part of a compliance erasure (`refunds.compliance`), done by the worker once the
erasure has committed (files are not transactional, and the spool is the publishing side's,
not the core's). Only this host's spool is in reach: an ingest on another host keeps its
files until they are published, then the apply path stores them (the erasure does not reach
a message that arrives after it). A file another process holds at that moment (claimed by a
drainer that is publishing it) is rewritten all the same: the copy being published is already
on its way."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.spool import Spool
from broker.wire import from_wire, to_wire
from refunds import redaction
from refunds.compliance import SpoolErasure
from refunds.delivery import RawDelivery


def erase_spooled(spool_dir: str, erasure: SpoolErasure) -> int:
    """Rewrite (a customer's details erased) or remove (a whole shop) the shop's spool files;
    how many were rewritten or removed."""
    customer = erasure.customer
    if customer is None:
        return _rewrite(spool_dir, erasure.shop, lambda _delivery: None)
    return _rewrite(spool_dir, erasure.shop, lambda delivery: _erased(delivery, customer))


def _erased(delivery: RawDelivery, customer: redaction.Customer) -> RawDelivery:
    """The delivery with the customer's details erased; the same object when it held none."""
    body = redaction.erase_body(delivery.body, customer)
    headers = redaction.erase_json(dict(delivery.headers), customer)
    if body is None and headers is None:
        return delivery
    return dataclasses.replace(delivery, body=delivery.body if body is None else body,
                               headers=delivery.headers if headers is None else headers)


def _rewrite(spool_dir: str, shop: str,
                   change: Callable[[RawDelivery], RawDelivery | None]) -> int:
    """Each spool file of the shop: kept (change returns the same delivery), rewritten
    (another delivery) or removed (None); how many were rewritten or removed. A file is first
    renamed to a hidden name, which no drainer lists, so a drainer never claims it
    half-written; a file that is no delivery is left as it is."""
    changed = 0
    for _, path in Spool(spool_dir).files():
        hidden = path.with_name(f".{path.name}.erasing")
        try:
            path.rename(hidden)
        except FileNotFoundError:
            continue  # published or moved meanwhile
        try:
            delivery = from_wire(json.loads(hidden.read_bytes()))
        except (OSError, ValueError):
            hidden.rename(path)
            continue
        outcome = change(delivery) if delivery.shop == shop else delivery
        if outcome is delivery:
            hidden.rename(path)
            continue
        if outcome is None:
            hidden.unlink()
        elif not _replace(hidden, path, to_wire(outcome)):
            continue
        changed += 1
    return changed


def _replace(hidden: Path, path: Path, wire: dict[str, Any]) -> bool:
    """Write the erased delivery beside the original and put it in the original's place; on a
    failed write (a full disk) the original goes back untouched, so the delivery is never
    lost, and the erasure of that file is left undone (False)."""
    erased = path.with_name(f".{path.name}.erased")
    try:
        with erased.open("wb") as out:
            out.write(json.dumps(wire).encode("ascii"))
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        erased.unlink(missing_ok=True)
        hidden.rename(path)
        return False
    os.replace(erased, path)
    hidden.unlink()
    return True
