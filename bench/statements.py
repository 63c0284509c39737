"""SQL statements per delivery on the apply path, counted in-process: pg_stat_statements is
not loaded on the bench's PostgreSQL, so a SQLAlchemy `before_cursor_execute` listener counts
what `refunds.apply.apply_deliveries` sends for a list of fresh deliveries (BEGIN and COMMIT
are not statements the listener sees: add two per list)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.payloads import deliveries
from bench.stack import Stack
from refunds.apply import apply_deliveries
from refunds.db import make_engine
from refunds.delivery import RawDelivery
from refunds.settings import Settings


def raw_deliveries(stack: Stack, size: int) -> list[RawDelivery]:
    """`size` new deliveries as the worker receives them (distinct refunds, two messages
    each, as the bench's queue holds)."""
    now = datetime.now(UTC)
    return [RawDelivery.from_request(s.body, {k.lower(): v for k, v in s.headers.items()}, now)
            for s in deliveries(size, secrets.token_hex(3), stack.secret)]


def statements_per_delivery(stack: Stack, size: int) -> float:
    """Statements per delivery for one list of `size`, after a first list (not counted) has
    warmed the process up; one transaction per list, as the worker runs it."""
    settings = Settings.from_env(stack.env())
    engine = make_engine(settings)
    seen = [0]

    def count(*_args: Any) -> None:
        seen[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(2):
            seen[0] = 0
            with Session(engine) as session, session.begin():
                apply_deliveries(raw_deliveries(stack, size), session=session,
                                 naive_tz=settings.naive_tz, rules=settings.risk_rules)
    finally:
        engine.dispose()
    return seen[0] / size
