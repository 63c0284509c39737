"""The task's failure path without a broker: a retry that cannot be published must put the
message back, not let Celery delete it."""

from __future__ import annotations

from typing import Any

import pytest
from celery.canvas import Signature
from celery.exceptions import Reject, Retry
from conftest import make_settings
from deliveries import delivery
from payloads import camel_event

from worker.celery_app import make_celery
from worker.tasks import register_tasks

UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"


def run_task(monkeypatch: pytest.MonkeyPatch, publish: Any) -> None:
    settings = make_settings(UNREACHABLE_DB)
    task = register_tasks(make_celery(settings), settings)
    monkeypatch.setattr(Signature, "apply_async", publish)
    task.push_request(retries=0, id="t-1", called_directly=False, is_eager=False)
    try:
        task.run(delivery(camel_event()).to_wire())
    finally:
        task.pop_request()


def test_database_down_schedules_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    published: list[Signature] = []
    with pytest.raises(Retry):
        run_task(monkeypatch, lambda signature, *a, **k: published.append(signature))
    [retry] = published
    assert retry.options["argsrepr"].startswith("(delivery_id=")  # what logs and Flower show
    assert "'body'" not in retry.options["argsrepr"]


def test_unpublishable_retry_requeues_instead_of_dropping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broker_refuses(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionError("OOM command not allowed when used memory > 'maxmemory'")

    with pytest.raises(Reject) as rejected:
        run_task(monkeypatch, broker_refuses)
    assert rejected.value.requeue is True
