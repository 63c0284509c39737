"""The tasks' failure paths without a broker: a retry that cannot be published must put the
message back, not let Celery delete it. Both task forms, through the one runner."""

from __future__ import annotations

from typing import Any

import pytest
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from conftest import make_settings
from deliveries import batch_request, delivery
from payloads import camel_event

from broker.app import make_celery
from broker.wire import to_wire
from worker.handling import DeliveryHandler
from worker.runner import Disposal, Verdict
from worker.tasks import register_tasks

pytestmark = pytest.mark.unit

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"


def run_task(monkeypatch: pytest.MonkeyPatch, publish: Any) -> list[tuple[str, dict[str, Any]]]:
    """The task events the message's task sent: a retry's or a dead letter's (it is then
    acknowledged with Ignore); a requeue raises Reject."""
    settings = make_settings(UNREACHABLE_DB, batch_size=1)
    task = register_tasks(make_celery(settings), settings)
    monkeypatch.setattr(task, "apply_async", publish)
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(task, "send_event", lambda kind, **fields: events.append((kind, fields)))
    task.push_request(retries=0, id="t-1", called_directly=False, is_eager=False)
    try:
        with pytest.raises(Ignore):
            task.run(to_wire(delivery(camel_event())))
        return events
    finally:
        task.pop_request()


def test_database_down_schedules_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[dict[str, Any]] = []
    [(kind, fields)] = run_task(monkeypatch, lambda *a, **options: published.append(options))
    # shown as a retry, with its cause
    assert kind == "task-retried" and "OperationalError" in fields["exception"]
    [retry] = published
    # the same message; the attempt is held, not counted, while the database is down
    assert (retry["task_id"], retry["retries"]) == ("t-1", 0)
    assert retry["argsrepr"].startswith("(delivery_id=")  # what logs and Flower show
    assert "'body'" not in retry["argsrepr"]


def test_unpublishable_retry_requeues_instead_of_dropping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broker_refuses(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("OOM command not allowed when used memory > 'maxmemory'")

    with pytest.raises(Reject) as rejected:
        run_task(monkeypatch, broker_refuses)
    assert rejected.value.requeue is True


def run_batch(monkeypatch: pytest.MonkeyPatch, publish: Any, size: int = 3) -> dict[str, str]:
    settings = make_settings(UNREACHABLE_DB, batch_size=20)
    task = register_tasks(make_celery(settings), settings)
    monkeypatch.setattr(task, "apply_async", publish)
    requests = [batch_request(delivery(camel_event()), f"t-{n}", retries=n) for n in range(size)]
    verdicts: dict[str, Verdict] = task.run(requests)
    return {message_id: verdict.outcome for message_id, verdict in verdicts.items()}


def test_database_down_retries_every_delivery_of_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published: list[dict[str, Any]] = []
    outcomes = run_batch(monkeypatch, lambda *a, **options: published.append(options))
    assert outcomes == {"t-0": "retry", "t-1": "retry", "t-2": "retry"}
    assert [(p["task_id"], p["retries"]) for p in published] == [  # held, not counted
        ("t-0", 0), ("t-1", 1), ("t-2", 2)]
    assert all(p["countdown"] == 0.2 for p in published)
    assert all(p["argsrepr"].startswith("(delivery_id=") for p in published)


def test_unpublishable_batch_retry_requeues_instead_of_dropping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broker_refuses(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("OOM command not allowed when used memory > 'maxmemory'")

    assert set(run_batch(monkeypatch, broker_refuses).values()) == {Disposal.REQUEUE}


def test_a_batch_out_of_time_goes_back_without_counting_an_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow(*_args: Any, **_kwargs: Any) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(DeliveryHandler, "handle", slow)
    published: list[dict[str, Any]] = []
    outcomes = run_batch(monkeypatch, lambda *a, **options: published.append(options))
    assert set(outcomes.values()) == {Disposal.REQUEUE}  # they come back one per batch
    assert published == []  # no retry published, no attempt counted
