"""The reconcile runs as recorded (`reconcile_runs`): one row per reconcile of a shop. What
operators see of reconciling is read from these rows rather than counted in the reconcile
process, which is short-lived: the metrics of every /metrics agree and survive its exit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from refunds.models import ReconcileRun

ERROR_LENGTH = 500
KINDS = ("missing", "differs", "only_local", "applied")


@dataclass(frozen=True)
class Found:
    """A run's counts, or the sums over runs."""

    missing: int
    differs: int
    only_local: int
    applied: int

    def by_kind(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in KINDS}


@dataclass(frozen=True)
class Totals:
    """The runs of one shop that ended with one outcome: how many, and what they found."""

    shop: str
    outcome: str
    runs: int
    found: Found


@dataclass(frozen=True)
class LastRun:
    shop: str
    finished_at: datetime
    outcome: str
    found: Found


def record(shop: str, outcome: str, found: Found, *, started_at: datetime,
           finished_at: datetime, error: str | None, session: Session) -> None:
    """Add the run's row in the caller's transaction. `error` is cut to one short line: the
    caller's text must already be free of tokens (genstore_api's errors are)."""
    line = None if error is None else " ".join(error.split())[:ERROR_LENGTH]
    session.add(ReconcileRun(shop=shop, started_at=started_at, finished_at=finished_at,
                             outcome=outcome, error=line, **found.by_kind()))


def totals(*, session: Session) -> list[Totals]:
    """Runs and their findings summed by shop and outcome: one grouped query (a scan of the
    table, which grows by a row per shop per round: about 35,000 a year per shop at one
    round every 15 minutes)."""
    query = (select(ReconcileRun.shop, ReconcileRun.outcome, func.count(),
                    *(func.sum(getattr(ReconcileRun, kind)) for kind in KINDS))
             .group_by(ReconcileRun.shop, ReconcileRun.outcome)
             .order_by(ReconcileRun.shop, ReconcileRun.outcome))
    return [Totals(shop, outcome, runs, Found(*(int(n or 0) for n in sums)))
            for shop, outcome, runs, *sums in session.execute(query)]


def last_runs(*, session: Session) -> list[LastRun]:
    """The latest run of each shop that ever ran (the highest id: rows are added as runs
    end), by shop."""
    latest = select(func.max(ReconcileRun.id)).group_by(ReconcileRun.shop)
    query = (select(ReconcileRun).where(ReconcileRun.id.in_(latest))
             .order_by(ReconcileRun.shop))
    return [LastRun(run.shop, run.finished_at, run.outcome,
                    Found(run.missing, run.differs, run.only_local, run.applied))
            for run in session.scalars(query)]
