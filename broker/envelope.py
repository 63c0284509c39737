"""The sink's task message, prepared once and filled in per delivery: the kombu message (Celery
protocol 2) that `app.send_task(TASK_NAME, args=[wire], retry=False, **display(...))` and
kombu's Redis channel would build, without building it through them on every publish
(`Celery.send_task`, kombu's producer and its per-publish Redis client cost the ingest about
0.3 ms of CPU per delivery; measured in docs/performance.md).

What a worker, the sweeper (`broker.wire.delivery_of`), Flower and a retry read is the same
as from `send_task`: `tests/unit/test_envelope.py` publishes one delivery both ways and
compares every header, property and the decoded body, so a Celery or kombu upgrade that
changes the message fails there. Fixed here, as Celery fills them for this task: no eta,
expiry, group, callbacks or time limits (the worker applies its own from its configuration),
priority 0, the anonymous direct exchange routed by queue name, persistent delivery mode."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.utils.uuid import uuid

from broker.app import TASK_NAME
from broker.wire import to_wire
from refunds.delivery import RawDelivery

# kombu's persistent delivery mode (`kombu.entity.PERSISTENT_DELIVERY_MODE`), Celery's default
DELIVERY_MODE = 2
# the task body's third element: no callbacks, error callbacks, chain or chord
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class Prepared:
    """One message ready for the transport: its id (the ledger's key) and the message as the
    queue holds it (JSON text)."""

    message_id: str
    payload: str


class Envelope:
    """The template of one Celery app's task message: what every delivery's message shares,
    read from the app once (its queue, this process's node name)."""

    def __init__(self, app: Celery):
        self.app = app
        self.queue = str(app.conf.task_routes[TASK_NAME]["queue"])
        self.origin = anon_nodename()

    def prepare(self, delivery: RawDelivery) -> Prepared:
        """The delivery's task message, with a new task message id."""
        task_id = uuid()
        root_id, parent_id = self._lineage(task_id)
        shown = display(delivery)
        body = json.dumps([[to_wire(delivery)], {}, EMBED])
        headers = {
            "lang": "py", "task": TASK_NAME, "id": task_id, "shadow": shown["shadow"],
            "eta": None, "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": root_id, "parent_id": parent_id,
            "argsrepr": shown["argsrepr"], "kwargsrepr": shown["kwargsrepr"],
            "origin": self.origin, "ignore_result": False, "replaced_task_nesting": 0,
            "stamped_headers": None, "stamps": {},
        }
        # Celery passes the display options on as message properties too
        properties = {
            "correlation_id": task_id, "reply_to": self.app.thread_oid,
            "argsrepr": shown["argsrepr"], "kwargsrepr": shown["kwargsrepr"],
            "delivery_mode": DELIVERY_MODE,
            "delivery_info": {"exchange": "", "routing_key": self.queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": uuid(),
        }
        message = {
            "body": base64.b64encode(body.encode("utf-8")).decode("ascii"),
            "content-encoding": "utf-8", "content-type": "application/json",
            "headers": headers, "properties": properties,
        }
        return Prepared(message_id=task_id, payload=json.dumps(message))

    def _lineage(self, task_id: str) -> tuple[str, str | None]:
        """(root id, parent id): published from inside a task, as `send_task` does, the
        message descends from it; otherwise it is its own root."""
        parent: Any = self.app.current_worker_task
        if not parent:
            return task_id, None
        return parent.request.root_id or parent.request.id, parent.request.id


def display(delivery: RawDelivery) -> dict[str, str]:
    """How the task shows in worker logs, task events and Flower: ids, topic and shop only,
    never the body (it holds customer contact details)."""
    return {
        "shadow": f"{TASK_NAME}[{delivery.topic or 'no-topic'} {delivery.shop}]",
        "argsrepr": f"(delivery_id={delivery.delivery_id!r}, topic={delivery.topic!r}, "
        f"shop={delivery.shop!r}, body_bytes={len(delivery.body)})",
        "kwargsrepr": "{}",
    }
