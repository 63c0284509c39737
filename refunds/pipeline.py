"""The database's side of the pipeline's health, for the console's pipeline page: how many
messages the apply path recorded per minute lately, and the dead letters waiting for an
operator by reason. (The broker's side, queue and ledger, lives in Redis: ingest/live_metrics.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from refunds.dead_letters import DEAD
from refunds.models import DeadLetter, RefundEvent
from refunds.timeline import Effect

# the effects of a message the apply path recorded (a stale one counts in events_applied too)
RECORDED = (Effect.APPLIED.value, Effect.STALE.value)
MINUTE_FORMAT = "%Y-%m-%d %H:%M"


@dataclass(frozen=True)
class MinuteCount:
    minute: datetime  # the minute's start, UTC
    count: int


def applied_per_minute(*, session: Session, now: datetime, minutes: int = 60,
                       shop: str | None = None) -> list[MinuteCount]:
    """Refund events with effect applied or stale, by the minute of `recorded_at` (the
    commit of the transaction that applied them), for the `minutes` minutes up to `now`'s:
    one entry per minute, oldest first, zero where nothing was recorded; the last minute is
    the one still going. Limited to a shop when given.

    One grouped query, a range scan of `ix_refund_events_recorded_at` (the last hour only,
    however long the history). Runs in the caller's session, never writes."""
    last = now.astimezone(UTC).replace(second=0, microsecond=0)
    first = last - timedelta(minutes=minutes - 1)
    bucket = _minute_text(session)
    query = (select(bucket, func.count())
             .where(RefundEvent.recorded_at >= first, RefundEvent.effect.in_(RECORDED))
             .group_by(bucket))
    if shop is not None:
        query = query.where(RefundEvent.shop == shop)
    counts = {text: count for text, count in session.execute(query)}
    starts = (first + timedelta(minutes=offset) for offset in range(minutes))
    return [MinuteCount(start, counts.get(start.strftime(MINUTE_FORMAT), 0)) for start in starts]


def _minute_text(session: Session) -> ColumnElement[str]:
    """`recorded_at`'s UTC minute as `YYYY-MM-DD HH:MM` text: SQLite keeps naive UTC text
    (its first 16 characters), PostgreSQL a timestamptz (written in UTC whatever the
    session's zone)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.substr(RefundEvent.recorded_at, 1, 16)
    return func.to_char(func.timezone("UTC", RefundEvent.recorded_at), "YYYY-MM-DD HH24:MI")


def dead_by_reason(*, session: Session, shop: str | None = None,
                   reason: str | None = None) -> dict[str, int]:
    """How many dead letters are in state `dead` (waiting for an operator, what a requeue of
    all takes), by reason, in reason order; only reasons that have some. Limited to a shop
    and a reason when given. Runs in the caller's session, never writes."""
    query = (select(DeadLetter.reason, func.count()).where(DeadLetter.state == DEAD)
             .group_by(DeadLetter.reason).order_by(DeadLetter.reason))
    if shop is not None:
        query = query.where(DeadLetter.shop == shop)
    if reason is not None:
        query = query.where(DeadLetter.reason == reason)
    return {found: count for found, count in session.execute(query)}
