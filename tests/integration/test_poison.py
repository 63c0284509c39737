"""A message that kills its worker process every time is dead-lettered as worker_lost after a
bounded number of redeliveries, while normal traffic keeps flowing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SECRET, make_settings
from deliveries import view
from payloads import camel_event, to_body
from processes import wait_for, workers
from signing import genstore_headers
from sqlalchemy import select

from ingest import create_app
from refunds.db import session_factory
from refunds.models import DeadLetter

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("batch_size", [1, 20], ids=["one", "batches"])
def test_poison_message_is_dead_lettered_and_others_apply(
    pg_url: str, redis_url: str, key_prefix: str, tmp_path: Path, batch_size: int
) -> None:
    """In batch mode the poison message first takes its whole batch down; the batch comes
    back as redelivered messages, each applied alone, so only the poison one is lost again."""
    settings = make_settings(pg_url, redis_url, key_prefix, max_redeliveries=2,
                             batch_size=batch_size)
    client = create_app(settings).test_client()
    with workers(settings, tmp_path, poisoned=True) as [worker]:
        for number, note in enumerate(["fine", "POISON", "also fine"]):
            body = to_body(camel_event(refund_id=str(number), note=note))
            headers = genstore_headers(body, SECRET, **{"X-Genstore-Webhook-Id": f"p-{number}"})
            assert client.post("/webhooks/genstore", data=body,
                               headers=headers).status_code == 202

        def letters() -> list[DeadLetter]:
            with session_factory(settings)() as session:
                return list(session.scalars(select(DeadLetter)))

        wait_for(lambda: len(letters()) == 1, 90, "poison message not dead-lettered")
        [letter] = letters()
        assert (letter.delivery_id, letter.reason, letter.attempts) == ("p-1", "worker_lost", 2)
        wait_for(lambda: worker.output().count("WorkerLostError") >= 2, 10, "no lost workers")
        for refund_id in ("0", "2"):
            wait_for(lambda r=refund_id: _applied(settings, r), 30,  # type: ignore[misc]
                     f"refund {refund_id} not applied")


def _applied(settings: object, refund_id: str) -> bool:
    try:
        return view(settings, refund_id)["events_applied"] == 1  # type: ignore[arg-type]
    except AssertionError:
        return False
