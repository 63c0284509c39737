"""The real stack on this machine: a private database on the local PostgreSQL, a private
redis-server on a free port (AOF on, as deployed), gunicorn ingest (or the bare app) and
Celery workers, each started with the product's own commands, all cleaned up on exit."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from ingest import gunicorn_config
from refund_sink.servers import free_port, start_redis
from refunds.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("dead_letters", "deliveries", "refund_messages", "refunds", "raw_deliveries")


@dataclass
class Config:
    """Configuration-only knobs the benchmark passes on the command line. The gunicorn worker
    class, threads and keep-alive default to the shipped ones (`ingest/gunicorn_config.py`)."""

    ingest_workers: int = gunicorn_config.default_workers()
    ingest_class: str = gunicorn_config.worker_class
    ingest_threads: int = gunicorn_config.threads
    ingest_keepalive: int = gunicorn_config.keepalive
    worker_concurrency: int = 2
    worker_pool: str = "prefork"
    prefetch: int = Settings.batch_size
    batch_size: int = Settings.batch_size
    log_level: str = "INFO"  # the shipped default (refunds.logs)
    admin_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Stack:
    config: Config
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    queue: str = "bench"
    database: str = field(default_factory=lambda: f"bench_{secrets.token_hex(4)}")
    redis_port: int = 0
    redis_proc: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.redis_port = free_port()
        self.redis_proc = start_redis(self.tmp / "redis", self.redis_port)
        with psycopg.connect(self.config.admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.database}"')
        subprocess.run([sys.executable, "-m", "refund_sink.cli", "db", "upgrade"],
                       env=self.env(), cwd=ROOT, check=True, capture_output=True)
        return self

    def __exit__(self, *_exc: object) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        if self.redis_proc is not None:
            self.stop(self.redis_proc)
        with suppress(psycopg.Error), psycopg.connect(self.config.admin_url,
                                                      autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:5432/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self, **extra: str) -> dict[str, str]:
        metrics = self.tmp / f"metrics-{secrets.token_hex(3)}"
        metrics.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "GENSTORE_WEBHOOK_SECRET": self.secret,
            "REFUND_SINK_QUEUE": self.queue,
            "REFUND_SINK_REDIS_KEY_PREFIX": "",
            "REFUND_SINK_SPOOL_DIR": str(self.tmp / "spool"),
            "REFUND_SINK_LOG_LEVEL": self.config.log_level,
            "REFUND_SINK_METRICS_PORT": "0",
            "REFUND_SINK_HEARTBEAT_DIR": str(self.tmp / "heartbeats"),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            "PYTHONPATH": str(ROOT),
            "REFUND_SINK_BATCH_SIZE": str(self.config.batch_size),
            **extra,
        }

    # -- processes -------------------------------------------------------------------------
    def start_http(self, app: str = "ingest:create_app()") -> tuple[subprocess.Popen[bytes], str]:
        """gunicorn with the ingest's config; `app` is the ingest or bench.bare's."""
        port = free_port()
        cfg = self.config
        command = [sys.executable, "-m", "gunicorn", "--config", "python:ingest.gunicorn_config",
                   "--bind", f"127.0.0.1:{port}", "--workers", str(cfg.ingest_workers),
                   "--worker-class", cfg.ingest_class, "--threads", str(cfg.ingest_threads),
                   "--keep-alive", str(cfg.ingest_keepalive),
                   "--backlog", "2048", "--log-level", "warning", app]
        log = open(self.tmp / f"gunicorn-{port}.log", "wb")  # noqa: SIM115 - closed by the OS
        proc = subprocess.Popen(command, env=self.env(), cwd=ROOT, stdout=log, stderr=log)
        self.procs.append(proc)
        wait_http(f"http://127.0.0.1:{port}/", proc)
        return proc, f"127.0.0.1:{port}"

    def start_workers(self) -> subprocess.Popen[bytes]:
        cfg = self.config
        command = [sys.executable, "-m", "celery", "-A", "worker", "worker",
                   "--without-gossip", "--without-mingle",
                   "--loglevel", cfg.log_level, "--concurrency", str(cfg.worker_concurrency),
                   "--pool", cfg.worker_pool, "--prefetch-multiplier", str(cfg.prefetch),
                   "--queues", self.queue, "--hostname", f"bench-{secrets.token_hex(3)}@%h"]
        log = open(self.tmp / "worker.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(command, env=self.env(), cwd=ROOT, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Empty tables and broker between runs."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        self.redis().flushall()

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def counts(self) -> dict[str, int]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            found = {}
            for table in TABLES:
                query = f"SELECT count(*) FROM {table}"  # noqa: S608 - our own table names
                row = conn.execute(query).fetchone()
                found[table] = int(row[0]) if row else 0
            return found

    def applied(self) -> int:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM deliveries").fetchone()
            return int(row[0]) if row else 0

    def queue_depth(self) -> int:
        return int(self.redis().llen(self.queue))

    def wait_applied(self, expected: int, timeout: float, poll: float = 0.2) -> float:
        """Seconds until `expected` deliveries are recorded; raises on timeout."""
        started = time.monotonic()
        while True:
            done = self.applied()
            if done >= expected:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{done}/{expected} applied after {timeout:.0f}s")
            time.sleep(poll)


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)  # noqa: S310 - local
            return
        except urllib.error.HTTPError:
            return  # it answers (404 on /)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")
