"""`refund-sink run`: SQLite file, a private Redis, migrations, ingest, worker, Flower and the
reconcile loop (every registered shop, every 15 minutes), all started from one command and
stopped together with Ctrl-C. One `run` per folder: it holds the folder's lock and records
where its sink is for the other commands (refund_sink.state_folder)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from types import FrameType

from cryptography.fernet import Fernet

from refund_sink.command_lines import gunicorn_command, with_metrics_dir, worker_command
from refund_sink.servers import ServerError, free_port, start_redis
from refund_sink.shop_commands import SECRET_KEY_FILE
from refund_sink.state_folder import (
    DATA_DIR,
    SECRET_FILE,
    SECRET_FROM_ENVIRONMENT,
    Record,
    RunLock,
)
from refunds.settings import Settings

EXAMPLE = "examples/genstore-refund-event.json"
RECONCILE = ["reconcile", "--all-shops", "--every", "15m", "--window", "48h", "--apply"]


class EmbeddedSink:
    def __init__(self, *, host: str, port: int):
        self.host, self.port = host, port
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        self.flower_port = free_port()
        self.worker_metrics = ""  # what the announcement says of them
        self.reconciled_shops = 0  # registered when it started

    def run(self) -> int:
        # Explicit, so Ctrl-C stops it even when started from a shell that ignores SIGINT.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        lock = RunLock()
        lock.acquire()  # before anything starts: a second `run` here stops at once
        try:
            env = self._environment()
            self._migrate(env)
            self._start_processes(env)
            secret_source = (SECRET_FROM_ENVIRONMENT if os.environ.get(SECRET_FROM_ENVIRONMENT)
                             else str(SECRET_FILE))
            Record.of(env, webhook_url=f"{self._url()}/webhooks/genstore",
                      secret_source=secret_source).write()
            self._announce(env)
            self._watch()
        finally:
            self._stop()
            lock.release()
        print("refund-sink stopped", flush=True)
        return 0

    def _environment(self) -> dict[str, str]:
        DATA_DIR.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.setdefault("DATABASE_URL", "sqlite:///./refund-sink.db")
        env.setdefault("REFUND_SINK_FLOWER_URL", f"http://127.0.0.1:{self.flower_port}")
        if not env.get("REDIS_URL"):
            port = free_port()
            self.children.append(("redis", start_redis(DATA_DIR / "redis", port)))
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if not env.get("GENSTORE_WEBHOOK_SECRET"):
            if not SECRET_FILE.exists():
                SECRET_FILE.write_text(secrets.token_urlsafe(32) + "\n")
                SECRET_FILE.chmod(0o600)
            env["GENSTORE_WEBHOOK_SECRET"] = SECRET_FILE.read_text().strip()
        if not env.get("REFUND_SINK_SECRET_KEY"):  # the shops' tokens at rest (refunds.shops)
            if not SECRET_KEY_FILE.exists():
                SECRET_KEY_FILE.write_text(Fernet.generate_key().decode() + "\n")
                SECRET_KEY_FILE.chmod(0o600)
            env["REFUND_SINK_SECRET_KEY"] = SECRET_KEY_FILE.read_text().strip()
        return env

    def _migrate(self, env: dict[str, str]) -> None:
        subprocess.run(
            [sys.executable, "-m", "refund_sink.cli", "db", "upgrade"], env=env, check=True,
            stdout=subprocess.DEVNULL,
        )

    def _start_processes(self, env: dict[str, str]) -> None:
        settings = Settings.from_env(env)
        self._spawn("ingest", gunicorn_command(f"{self.host}:{self.port}", 2),
                    with_metrics_dir(env))
        worker_log_from = self._log_size("worker")
        worker = self._spawn("worker", worker_command(settings, 1), with_metrics_dir(env))
        self._wait_until_serving()
        self._wait_for_worker(settings, worker.pid)
        self.worker_metrics = self._worker_metrics(settings, worker_log_from)
        # Once the worker answers: Flower asks it for its configuration as it starts, and
        # logs "Inspect method ... failed" for every question asked before it could answer.
        flower = [sys.executable, "-m", "celery", "-A", "worker", "flower",
                  "--address=127.0.0.1", f"--port={self.flower_port}"]
        self._spawn("flower", flower, env)
        # Every 15 minutes over the last 48 h; each round lists the shops first, so the loop
        # does nothing until `refund-sink shop add` registers one.
        self.reconciled_shops = self._registered_shops(settings)
        self._spawn("reconcile", [sys.executable, "-m", "refund_sink.cli", *RECONCILE], env)

    @staticmethod
    def _registered_shops(settings: Settings) -> int:
        from refunds import shops
        from refunds.db import session_factory

        with session_factory(settings)() as session:
            return len(shops.listing(session=session))

    def _spawn(self, name: str, command: list[str],
               env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(DATA_DIR / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        child = subprocess.Popen(command, env=env, stdout=log, stderr=log)
        self.children.append((name, child))
        return child

    @staticmethod
    def _log_size(name: str) -> int:
        try:
            return (DATA_DIR / f"{name}.log").stat().st_size
        except FileNotFoundError:
            return 0

    def _wait_for_worker(self, settings: Settings, pid: int, timeout: float = 60.0) -> None:
        """Ready once it touched its heartbeat file (after starting its metrics server)."""
        from worker.observability import heartbeat_file

        deadline = time.monotonic() + timeout
        while not heartbeat_file(settings.heartbeat_dir, pid).exists():
            self._check_children()
            if time.monotonic() > deadline:
                raise ServerError(f"worker not ready within {timeout:.0f}s; "
                                  f"see {DATA_DIR}/worker.log")
            time.sleep(0.2)

    @staticmethod
    def _worker_metrics(settings: Settings, log_from: int) -> str:
        """Where the worker serves its metrics, or why it does not (from its log events)."""
        from worker.observability import METRICS_NOT_SERVED

        port = settings.metrics_port
        if not port:
            return "worker metrics off (REFUND_SINK_METRICS_PORT=0)"
        with (DATA_DIR / "worker.log").open("rb") as log:
            log.seek(log_from)
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            if METRICS_NOT_SERVED in line:
                why = "is taken" if "in use" in line else "could not be opened"
                return (f"worker metrics not served: port {port} {why} "
                        "(REFUND_SINK_METRICS_PORT chooses another)")
        return f"http://127.0.0.1:{port}/metrics (worker)"

    def _wait_until_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self._url()}/healthz", timeout=1):  # noqa: S310
                    return
            except OSError:
                self._check_children()
                time.sleep(0.2)
        raise ServerError(f"ingest did not answer within {timeout:.0f}s; see {DATA_DIR}/ingest.log")

    def _url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _announce(self, env: dict[str, str]) -> None:
        print(
            f"refund-sink is running at {self._url()}\n"
            f"  webhook:   POST {self._url()}/webhooks/genstore\n"
            f"  secret:    {env['GENSTORE_WEBHOOK_SECRET']}\n"
            f"  database:  {env['DATABASE_URL']}\n"
            f"  broker:    {env['REDIS_URL']}\n"
            f"  desk:      {self._url()}/desk/ (sign in with a token, below)\n"
            f"  flower:    http://127.0.0.1:{self.flower_port}\n"
            f"  metrics:   {self._url()}/metrics (ingest), {self.worker_metrics}\n"
            f"{self._reconcile_line()}"
            f"  logs:      {DATA_DIR}/*.log\n"
            f"Other refund-sink commands run in this folder (send, dlq, token, spool) use\n"
            f"this sink's database and broker (recorded in {DATA_DIR}/run.json).\n"
            f"try:  refund-sink send {EXAMPLE}\n"
            f"then: refund-sink token create --scopes read_refunds,write_refunds\n"
            "Ctrl-C stops everything.",
            flush=True,
        )

    def _reconcile_line(self) -> str:
        """Said only when a shop is registered: otherwise the loop has nothing to do."""
        if not self.reconciled_shops:
            return ""
        return (f"  reconcile: {self.reconciled_shops} shop(s) with Genstore every 15 min over "
                f"the last 48 h ({DATA_DIR}/reconcile.log)\n")

    def _watch(self) -> None:
        while not self.stopping:
            self._check_children()
            time.sleep(0.5)

    def _check_children(self) -> None:
        for name, child in self.children:
            if child.poll() is not None and not self.stopping:
                raise ServerError(f"{name} exited with code {child.returncode}; "
                                  f"see {DATA_DIR}/{name}.log")

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping = True

    def _stop(self) -> None:
        self.stopping = True
        for _name, child in reversed(self.children):
            if child.poll() is None:
                child.terminate()
        for _name, child in reversed(self.children):
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
