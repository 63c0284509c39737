"""`refund-sink run`: SQLite file, a private Redis, migrations, ingest, worker and Flower, all
started from one command and stopped together with Ctrl-C."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

from refund_sink.servers import ServerError, free_port, start_redis

DATA_DIR = Path(".refund-sink")
SECRET_FILE = DATA_DIR / "secret"
EXAMPLE = "examples/genstore-refund-event.json"


class EmbeddedSink:
    def __init__(self, *, host: str, port: int):
        self.host, self.port = host, port
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        self.flower_port = free_port()

    def run(self) -> int:
        # Explicit, so Ctrl-C stops it even when started from a shell that ignores SIGINT.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            env = self._environment()
            self._migrate(env)
            self._start_processes(env)
            self._announce(env)
            self._watch()
        finally:
            self._stop()
        print("refund-sink stopped", flush=True)
        return 0

    def _environment(self) -> dict[str, str]:
        DATA_DIR.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.setdefault("DATABASE_URL", "sqlite:///./refund-sink.db")
        if not env.get("REDIS_URL"):
            port = free_port()
            self.children.append(("redis", start_redis(DATA_DIR / "redis", port)))
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if not env.get("GENSTORE_WEBHOOK_SECRET"):
            if not SECRET_FILE.exists():
                SECRET_FILE.write_text(secrets.token_urlsafe(32) + "\n")
                SECRET_FILE.chmod(0o600)
            env["GENSTORE_WEBHOOK_SECRET"] = SECRET_FILE.read_text().strip()
        return env

    def _migrate(self, env: dict[str, str]) -> None:
        subprocess.run(
            [sys.executable, "-m", "refund_sink.cli", "db", "upgrade"], env=env, check=True,
            stdout=subprocess.DEVNULL,
        )

    def _start_processes(self, env: dict[str, str]) -> None:
        from refund_sink.processes import gunicorn_command, with_metrics_dir, worker_command
        from refunds.settings import Settings

        settings = Settings.from_env(env)
        self._spawn("ingest", gunicorn_command(f"{self.host}:{self.port}", 2),
                    with_metrics_dir(env))
        self._spawn("worker", worker_command(settings, 1), with_metrics_dir(env))
        flower = [sys.executable, "-m", "celery", "-A", "worker", "flower",
                  "--address=127.0.0.1", f"--port={self.flower_port}"]
        self._spawn("flower", flower, env)
        self._wait_until_serving()

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(DATA_DIR / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.children.append((name, subprocess.Popen(command, env=env, stdout=log, stderr=log)))

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
            f"  flower:    http://127.0.0.1:{self.flower_port}\n"
            f"  logs:      {DATA_DIR}/*.log\n"
            f"try:  refund-sink send {EXAMPLE} --url {self._url()}/webhooks/genstore\n"
            f"then: refund-sink token create --scopes read_refunds\n"
            "Ctrl-C stops everything.",
            flush=True,
        )

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
