"""The Celery app: Redis broker, late acks, and timeouts ordered so a message is never handed to
a second worker while the first still works on it."""

from __future__ import annotations

from typing import Any

from celery import Celery

from broker import redis_client
from refunds.settings import Settings

TASK_NAME = "refunds.apply_delivery"
# kombu sweeps unacknowledged messages back to the queue every RESTORE_INTERVAL seconds once
# they are older than the visibility timeout: that bounds how long a killed worker's message
# waits (visibility timeout + this interval).
RESTORE_INTERVAL = 5


def make_celery(settings: Settings) -> Celery:
    app = Celery("refund_sink", broker=redis_client.broker_url(settings), set_as_current=False)
    app.conf.update(
        # kombu's Redis transport (or its Sentinel one), writing the ledger entry with each
        # publish (broker.transport) and fetching and acknowledging many messages per round
        # trip (broker.consume)
        broker_transport="broker.consume:SentinelTransport" if settings.redis_sentinel
        else "broker.consume:Transport",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_routes={TASK_NAME: {"queue": settings.queue}},
        # Ack after the effect is committed; a lost worker puts the message back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # The task handles its own failures (retry or dead letter). An exception that still
        # escapes (a hard time limit) is then not acknowledged but rejected without requeue,
        # which on Redis removes the message too: its ledger entry stays unsettled, and the
        # sweeper publishes it again once older than the visibility timeout.
        task_acks_on_failure_or_timeout=False,
        # A batch's worth per process (one message when REFUND_SINK_BATCH_SIZE=1): a dead
        # worker's prefetched messages come back after the visibility timeout like any other.
        worker_prefetch_multiplier=settings.batch_size,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 5),
        broker_transport_options=transport_options(settings),
        # Keep reconnecting through a broker outage of any length (the default gives up after
        # 100 attempts and the worker exits); kombu >= 5.4 carries the fix for workers that
        # reconnected but stopped consuming (celery issues 8030, 8091, 9054).
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=2,
        # On a lost broker connection, stop running tasks: their acks could not reach Redis
        # anyway, the messages come back, and the dedupe makes the rerun harmless.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # Task events (two per message) only while someone watches: Flower turns them on in
        # every worker by broadcast when it starts, and again every few seconds for workers
        # started after it. Worker heartbeats are sent either way.
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    return app


def transport_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        "unacked_restore_interval": RESTORE_INTERVAL,
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
        "socket_keepalive": True,
        "health_check_interval": 10,
        **redis_client.sentinel_options(settings.redis_sentinel),
    }
    if settings.redis_key_prefix:
        options["global_keyprefix"] = settings.redis_key_prefix
    return options
