"""Commands that a deploy runs on a schedule (`flags check`, `retention apply`): once, or every
DURATION until stopped, where a round the database fails is reported and the next one runs
all the same."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy.exc

from refunds.db import describe


def once_or_every(every: timedelta | None, one_round: Callable[[], object], name: str) -> int:
    """Run `one_round` once (its errors are the command's), or every `every` until stopped:
    then a round the database fails is reported on stderr as `refund-sink: NAME: database
    error: ...`, and the next one runs `every` later."""
    if every is None:
        one_round()
        return 0
    while True:
        try:
            one_round()
        except sqlalchemy.exc.SQLAlchemyError as error:
            print(f"refund-sink: {name}: database error: {describe(error)}", file=sys.stderr)
        time.sleep(every.total_seconds())
