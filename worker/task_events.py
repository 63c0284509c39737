"""The task event Flower shows for a settled message, the same for both task forms: a dead
letter (or a message this sink did not write) is `task-failed` with its reason, a retry is
`task-retried` with its cause, anything else `task-succeeded` with its outcome.

Celery would send `task-succeeded` for every task that returns: the one-message form sends
its own event and raises `Ignore` instead (acknowledged, no further event); the batch form
sends each message's event itself."""

from __future__ import annotations

from typing import Any

from refunds.apply import Outcome
from worker.runner import Disposal, Verdict

FAILED = {Outcome.DEAD_LETTERED.value: "dead-lettered", Disposal.MALFORMED.value: "dropped"}


def task_event(verdict: Verdict) -> tuple[str, dict[str, Any]]:
    """(event type, fields) for an acknowledged message; never for `Disposal.REQUEUE`."""
    if verdict.outcome in FAILED:
        return "task-failed", {"exception": f"{FAILED[verdict.outcome]}: {verdict.why}",
                               "traceback": None}
    if verdict.outcome == Disposal.RETRY:
        return "task-retried", {"exception": verdict.why, "traceback": None}
    return "task-succeeded", {"result": repr(str(verdict.outcome))}
