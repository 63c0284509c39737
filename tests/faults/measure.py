"""Waiting for a scenario's traffic to settle, and reading what it left against the oracle."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import func, select, text

from broker.ledger import Ledger
from broker.spool import Spool
from refunds.db import session_factory
from refunds.models import DeadLetter, DeliveryClaim, MessageRecord, Refund
from refunds.settings import Settings
from schemas.api import RefundView
from tests.oracle import actual_state, expected_state

from .traffic import Delivery as Sent

TABLES = ("deliveries", "refund_messages", "refunds", "dead_letters", "raw_deliveries")


@dataclass
class Result:
    scenario: str
    sent: int
    ok: int
    applied: int
    dead_lettered: int
    lost: int
    doubled: int
    mismatched: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # scenario checks that did not hold

    @property
    def passed(self) -> bool:
        return not (self.lost or self.doubled or self.mismatched or self.failures)


def truncate(settings: Settings) -> None:
    with session_factory(settings).begin() as session:
        session.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def backlog(settings: Settings, client: redis.Redis) -> int | None:
    """Messages on the queue (every priority list) plus messages a worker holds unacked;
    None while Redis does not answer."""
    prefix = settings.redis_key_prefix
    try:
        keys = list(client.scan_iter(match=f"{prefix}{settings.queue}*", count=1000))
        waiting = sum(int(client.llen(key)) for key in keys if client.type(key) == b"list")
        return waiting + int(client.hlen(f"{prefix}unacked"))
    except redis.RedisError:
        return None


def outcomes(settings: Settings) -> tuple[int, int] | None:
    """(rows in deliveries, dead letters), or None while the database does not answer."""
    try:
        with session_factory(settings)() as session:
            applied = session.scalar(select(func.count()).select_from(DeliveryClaim)) or 0
            dead = session.scalar(select(func.count()).select_from(DeadLetter)) or 0
            return int(applied), int(dead)
    except Exception:
        return None


def wait_drained(settings: Settings, client: redis.Redis, timeout: float = 600,
                 stable: float = 4, stuck: float = 150) -> str | None:
    """Until the queue and the unacked set are empty, the spool is empty, the ledger holds no
    unsettled delivery, and the database counts have not moved for `stable` seconds. Returns
    None, or why it gave up (nothing moved for `stuck` seconds, or `timeout` passed)."""
    spool, ledger = Spool(settings.spool_dir), Ledger(settings)
    started = last_change = time.monotonic()
    last: tuple[Any, ...] | None = None
    what = "backlog, spool, ledger, (applied, dead)"
    while True:
        now = time.monotonic()
        state = (backlog(settings, client), spool.count(), _unsettled(ledger),
                 outcomes(settings))
        if state != last:
            last, last_change = state, now
        elif state[:3] == (0, 0, 0) and now - last_change >= stable:
            return None
        if now - last_change >= stuck:
            return f"nothing moved for {stuck:.0f}s: {what} = {state}"
        if now - started >= timeout:
            return f"not drained after {timeout:.0f}s: {what} = {state}"
        time.sleep(1)


def _unsettled(ledger: Ledger) -> int | None:
    try:
        return ledger.size()
    except redis.RedisError:
        return None


def evaluate(settings: Settings, name: str, *, sent: int, ok: int, accepted: set[str],
             deliveries: list[Sent], expected_dead: dict[str, str], seconds: float) -> Result:
    with session_factory(settings)() as session:
        recorded = set(session.scalars(select(DeliveryClaim.delivery_id)))
        letters = dict(session.execute(select(DeadLetter.delivery_id, DeadLetter.reason)).all())
        actual = {
            row.refund_id: actual_state(RefundView.model_validate(row).model_dump(mode="json"))
            for row in session.scalars(select(Refund))
        }
        twice = set(session.scalars(
            select(MessageRecord.refund_id)
            .group_by(MessageRecord.shop, MessageRecord.refund_id, MessageRecord.occurred_at,
                      MessageRecord.kind)
            .having(func.count() > 1)
        ))  # fmt: skip
    by_refund: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for delivery in {d.delivery_id: d for d in deliveries}.values():
        if delivery.delivery_id in accepted and delivery.delivery_id not in expected_dead:
            by_refund[delivery.refund_id].append(delivery.payload)
    expected = {refund_id: expected_state(payloads) for refund_id, payloads in by_refund.items()}
    result = Result(
        scenario=name, sent=sent, ok=ok, applied=len(recorded), dead_lettered=len(letters),
        lost=len(accepted - recorded - set(letters)),
        doubled=len({r for r in actual if r in twice or _more(actual[r], expected.get(r))}),
        mismatched=sum(actual.get(r) != state for r, state in expected.items())
        + len(set(actual) - set(expected)),
        seconds=seconds,
    )
    _check_dead_letters(result, letters, expected_dead)
    return result


def _more(actual: dict[str, Any], expected: dict[str, Any] | None) -> bool:
    if expected is None:
        return False
    return bool(actual["events_applied"] > expected["events_applied"]
                or len(actual["fund_changes"]) > len(expected["fund_changes"]))


def _check_dead_letters(result: Result, letters: dict[str, str],
                        expected_dead: dict[str, str]) -> None:
    for delivery_id, reason in expected_dead.items():
        if letters.get(delivery_id) != reason:
            result.failures.append(
                f"{delivery_id}: expected dead letter {reason}, got {letters.get(delivery_id)}")
    for delivery_id, reason in letters.items():
        if delivery_id not in expected_dead:
            result.failures.append(f"{delivery_id}: unexpected dead letter {reason}")
    if letters:
        reasons = ", ".join(f"{d}={r}" for d, r in sorted(letters.items())[:5])
        result.notes.append(f"dead letters: {reasons}")
