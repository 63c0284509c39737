"""Read queries over refunds and deliveries, kept in the core so every view (API, console,
CLI) and the ledger's sweeper ask the same questions the same way (`refunds.search` holds
the refund search), and the paging and parameter errors they share."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    select,
)
from sqlalchemy.orm import Session

from refunds import dead_letters
from refunds.db import in_pairs
from refunds.dead_letters import REASONS, STATES, find
from refunds.delivery import RawDelivery
from refunds.models import DeadLetter, DeliveryClaim, Refund
from refunds.state import IN_PROGRESS, REFUNDED

MAX_PAGE = 500
DEFAULT_PAGE = 100
STATUSES = (IN_PROGRESS, REFUNDED)
# Row ids are INTEGER columns: on PostgreSQL nothing past 2**31 - 1 can exist (and comparing
# with it is an error), and SQLite's ids never get there.
MAX_ROW_ID = 2**31 - 1


class AmbiguousRefund(LookupError):
    """The refund id exists in several shops; the caller must name one."""

    def __init__(self, shops: Sequence[str]):
        super().__init__(f"refund exists in several shops: {', '.join(shops)}")
        self.shops = list(shops)


class BadParameter(ValueError):
    """A filter, limit or cursor outside what the query accepts; the message says what is."""


class BadCursor(BadParameter):
    pass


@dataclass(frozen=True)
class DeadLetterPage:
    dead_letters: Sequence[DeadLetter]
    next_cursor: str | None


def in_id_range(row_id: int) -> bool:
    """Could a row have this id? Ids outside never match and are not sent to the database."""
    return 1 <= row_id <= MAX_ROW_ID


def refund(refund_id: str, *, shop: str | None, session: Session) -> Refund | None:
    """The refund with this id (in this shop, when one is given), or None. AmbiguousRefund
    when no shop is given and the id exists in several."""
    query = select(Refund).where(Refund.refund_id == refund_id, Refund.events_applied > 0)
    if shop is not None:
        query = query.where(Refund.shop == shop)
    found = session.scalars(query.order_by(Refund.shop).limit(2)).all()
    if len(found) > 1:
        raise AmbiguousRefund([row.shop for row in found])
    return found[0] if found else None


def dead_letters_page(
    *,
    session: Session,
    shop: str | None = None,
    reason: str | None = None,
    state: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> DeadLetterPage:
    """Dead letters by id, a page at a time. BadParameter for a limit outside 1-500, an
    unknown reason or state, or a cursor this API did not return."""
    check_limit(limit)
    if reason is not None and reason not in REASONS:
        raise BadParameter(f"reason must be one of {', '.join(REASONS)}")
    if state is not None and state not in STATES:
        raise BadParameter(f"state must be one of {', '.join(STATES)}")
    after_id = decode_id_cursor(cursor, "dead_letters") if cursor else None
    rows = find(session=session, shop=shop, reason=reason, state=state, after_id=after_id,
                limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeadLetterPage(rows, encode_cursor("dead_letters", str(rows[-1].id)) if more else None)


def dead_letter(letter_id: int, *, shop: str | None, session: Session) -> DeadLetter | None:
    """The dead letter with this id (in this shop, when one is given), or None."""
    letter = session.get(DeadLetter, letter_id) if in_id_range(letter_id) else None
    if letter is None or (shop is not None and letter.shop != shop):
        return None
    return letter


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise BadParameter(f"limit must be a whole number from 1 to {MAX_PAGE}")


def settled_copies(
    copies: Mapping[str, tuple[RawDelivery, datetime]], *, session: Session
) -> set[str]:
    """Of these published copies (by message id: the delivery and when the copy was
    published), those whose fate is committed: the delivery is claimed with this body
    (applied, or a duplicate of a recorded message), or this body was dead-lettered (as a
    conflict too) since that copy was published. An older dead letter does not settle a later
    copy, nor a claim of another body under the key: that copy could still apply, or still
    become a conflict."""
    if not copies:
        return set()
    keys = {delivery.key for delivery, _ in copies.values()}
    letter_keys = keys | {dead_letters.conflicting(delivery).key
                          for delivery, _ in copies.values()}
    claimed = {tuple(row) for row in session.execute(
        select(DeliveryClaim.shop, DeliveryClaim.delivery_id, DeliveryClaim.body_sha256).where(
            in_pairs(DeliveryClaim.shop, DeliveryClaim.delivery_id, keys)))}
    letters = session.execute(
        select(DeadLetter.shop, DeadLetter.delivery_id, DeadLetter.body_sha256,
               DeadLetter.last_failed_at).where(
            in_pairs(DeadLetter.shop, DeadLetter.delivery_id, letter_keys),
            DeadLetter.state == dead_letters.DEAD))
    dead = {(row.shop, row.delivery_id, row.body_sha256): row.last_failed_at for row in letters}

    def settled(delivery: RawDelivery, published_at: datetime) -> bool:
        if (*delivery.key, delivery.body_sha256) in claimed:
            return True
        for key in (delivery.key, dead_letters.conflicting(delivery).key):
            failed_at = dead.get((*key, delivery.body_sha256))
            if failed_at is not None and failed_at >= published_at:
                return True
        return False

    return {message_id for message_id, copy in copies.items() if settled(*copy)}


def encode_cursor(first: str, second: str) -> str:
    raw = f"{first}\n{second}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        first, second = base64.urlsafe_b64decode(cursor.encode("ascii")).decode().split("\n")
    except (binascii.Error, UnicodeError, ValueError):
        raise BadCursor("cursor is not one this API returned") from None
    if "\x00" in first + second:  # never in a key; PostgreSQL refuses it in a parameter
        raise BadCursor("cursor is not one this API returned")
    return first, second


def decode_id_cursor(cursor: str, kind: str) -> int:
    """The row id in a cursor of `kind` (`encode_cursor(kind, str(id))`); BadCursor for a
    cursor of another kind or an id no row could have."""
    found, row_id = decode_cursor(cursor)
    digits = row_id.isascii() and row_id.isdigit() and len(row_id) <= 10
    if found != kind or not digits or not in_id_range(int(row_id)):
        raise BadCursor("cursor is not one this API returned")
    return int(row_id)
