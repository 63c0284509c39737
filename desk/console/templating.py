"""What every console template can call: the navigation, whether to show write actions, the
CSRF hidden field, and how times and amounts are written."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import NamedTuple

from flask import Blueprint, g
from markupsafe import Markup

from desk.console import csrf
from refunds.tokens import WRITE_REFUNDS


class Page(NamedTuple):
    label: str
    path: str  # under /desk/
    purpose: str
    needs_write: bool = False  # dead letters hold bodies and errors: write_refunds, as the API


NAV = (
    Page("Refunds", "refunds", "search refunds, saved views, CSV"),
    Page("Dead letters", "dead-letters", "deliveries that could not be applied; requeue",
         needs_write=True),
    Page("Flags", "flags", "risk flags, open and acknowledged; acknowledge"),
    Page("Reports", "reports", "the finance summary by day; CSV"),
    Page("Pipeline", "pipeline", "queue, spool, ledger, workers"),
)


def install(bp: Blueprint) -> None:
    bp.add_app_template_global(desk_nav)
    bp.add_app_template_global(can_write)
    bp.add_app_template_global(csrf_field)
    bp.add_app_template_filter(when)
    bp.add_app_template_filter(money)


def desk_nav() -> list[tuple[str, str, str]]:
    """(label, path, purpose) of the pages this token may open."""
    return [(page.label, page.path, page.purpose) for page in NAV
            if can_write() or not page.needs_write]


def can_write() -> bool:
    """Show write actions? Only to a token with write_refunds (the actions check again)."""
    return "grant" in g and WRITE_REFUNDS in g.grant.scopes


def csrf_field() -> Markup:
    """The hidden field every console form that POSTs carries."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf.token())


def when(moment: datetime | None) -> str:
    """A time in UTC to the second, `2025-03-01 10:00:00 UTC`; an em dash for none."""
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def money(amount: Decimal | str | None) -> str:
    """An amount exactly as stored (`10.00` stays `10.00`); an em dash for none."""
    if amount is None:
        return "—"
    return format(amount, "f") if isinstance(amount, Decimal) else amount
