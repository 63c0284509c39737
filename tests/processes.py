"""Real `celery worker` processes for integration tests, configured through the environment
exactly as an operator would."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from backing_services import stop

from refund_sink.servers import free_port
from refunds.settings import Settings

POISON_WORKER = Path(__file__).with_name("poison_worker.py")


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        GENSTORE_WEBHOOK_SECRET=",".join(settings.genstore_secrets),
        REFUND_SINK_QUEUE=settings.queue,
        REFUND_SINK_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        REFUND_SINK_MAX_RETRIES=str(settings.max_retries),
        REFUND_SINK_RETRY_BASE_SECONDS=str(settings.retry_base_seconds),
        REFUND_SINK_RETRY_MAX_SECONDS=str(settings.retry_max_seconds),
        REFUND_SINK_LOCK_TIMEOUT_MS=str(settings.lock_timeout_ms),
        REFUND_SINK_VISIBILITY_TIMEOUT=str(settings.visibility_timeout),
        REFUND_SINK_TASK_TIME_LIMIT=str(settings.task_time_limit),
        REFUND_SINK_MAX_REDELIVERIES=str(settings.max_redeliveries),
        REFUND_SINK_METRICS_PORT=str(settings.metrics_port),
        REFUND_SINK_HEARTBEAT_DIR=settings.heartbeat_dir,
        REFUND_SINK_BATCH_SIZE=str(settings.batch_size),
        REFUND_SINK_BATCH_WAIT_MS=str(settings.batch_wait_ms),
    )
    env.update(extra)
    return env


class Worker:
    """One `celery -A worker worker` (a main process and its pool children) in its own
    process group, so a test can kill all of it at once."""

    def __init__(self, settings: Settings, log_dir: Path, concurrency: int = 2,
                 poisoned: bool = False, **extra_env: str):
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        main = [str(POISON_WORKER)] if poisoned else ["-m", "celery", "-A", "worker"]
        command = [
            sys.executable, *main, "worker",
            "--concurrency", str(concurrency), "--queues", settings.queue,
            "--hostname", f"{self.log.stem}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=environment(settings, **extra_env), stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: "ready." in self.output(), 60, f"worker not ready: {self.log}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker: nothing gets a chance to ack or requeue."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        stop(self.process, timeout=30)


@contextmanager
def workers(settings: Settings, log_dir: Path, count: int = 1, concurrency: int = 2,
            poisoned: bool = False, **extra_env: str) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for _ in range(count):
            started.append(Worker(settings, log_dir, concurrency, poisoned, **extra_env))
        yield started
    finally:
        for worker in started:
            if worker.process.poll() is None:
                worker.stop()


def wait_for(condition: Callable[[], bool], timeout: float, message: str) -> float:
    """Poll until condition holds; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{message} (after {timeout:.0f}s)")


@contextmanager
def ingest(settings: Settings, log: Path, workers: int | None = None) -> Iterator[int]:
    """`refund-sink ingest --bind 127.0.0.1:PORT` (with `--workers`, if given; else its own
    defaults) on a free port, run in the log's folder; yields the port once it answers."""
    port = free_port()
    env = environment(settings, REFUND_SINK_SPOOL_DIR=settings.spool_dir,
                      PROMETHEUS_MULTIPROC_DIR=str(log.parent))
    command = [sys.executable, "-m", "refund_sink.cli", "ingest", "--bind", f"127.0.0.1:{port}"]
    if workers is not None:
        command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=log.parent)
    try:
        wait_for(lambda: answers(port), 30, f"ingest not serving: {log}")
        yield port
    finally:
        stop(process)


def answers(port: int) -> bool:
    """Whether a server on this port answers GET /healthz with 200."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
