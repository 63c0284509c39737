"""The real stack, private to one run: a PostgreSQL cluster and a Redis server that can be
stopped and restarted, the gunicorn ingest and `celery worker` processes (the poison worker
entry point, which behaves normally for every body without POISON)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis
from backing_services import stop as _stop
from processes import environment as shared_environment

from refund_sink.command_lines import gunicorn_command
from refund_sink.servers import free_port, start_redis
from refunds.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
POISON_WORKER = ROOT / "tests" / "poison_worker.py"
SECRET = "fault-runner-secret"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"{what} (after {timeout:.0f}s)")


def postgres_bin() -> Path:
    """The machine's PostgreSQL binaries, else the ones the pgserver package ships."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class Postgres:
    """A throwaway cluster (trust auth, 127.0.0.1 only) run as the `postgres` user when this
    process is root, since initdb refuses root."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.bin = postgres_bin()
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            directory.parent.chmod(0o755)  # mkdtemp's 0700 would keep the postgres user out
            shutil.chown(directory, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options,
                  "-l", str(self.directory / "postgres.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


class Redis:
    """redis-server with its AOF (fsync every second) in a directory that outlives restarts."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_redis(self.directory, self.port, appendonly=True)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): Redis writes its AOF out and exits."""
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=10)


@dataclass(frozen=True)
class RunSettings:
    """What every scenario's processes get, apart from the queue and key prefix."""

    visibility_timeout: int = 30
    task_time_limit: int = 20
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 10.0
    max_retries: int = 8
    max_redeliveries: int = 5
    lock_timeout_ms: int = 5000
    batch_size: int = Settings.batch_size

    @classmethod
    def quick(cls, batch_size: int = Settings.batch_size) -> RunSettings:
        """For small runs: a killed worker's messages come back after 10 s, not 30 s."""
        return cls(visibility_timeout=10, task_time_limit=8, retry_max_seconds=4.0,
                   batch_size=batch_size)


def scenario_settings(database_url: str, redis_url: str, spool: Path, run: RunSettings,
                      name: str) -> Settings:
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    return Settings(
        database_url=database_url, redis_url=redis_url, genstore_secrets=(SECRET,),
        queue=f"faults-{tag}", redis_key_prefix=f"faults-{tag}:",
        visibility_timeout=run.visibility_timeout, task_time_limit=run.task_time_limit,
        retry_base_seconds=run.retry_base_seconds, retry_max_seconds=run.retry_max_seconds,
        max_retries=run.max_retries, max_redeliveries=run.max_redeliveries,
        lock_timeout_ms=run.lock_timeout_ms, spool_dir=str(spool / tag),
        metrics_port=0, heartbeat_dir=str(spool / f"{tag}.heartbeats"),
        batch_size=run.batch_size,
    )


def environment(settings: Settings) -> dict[str, str]:
    return shared_environment(settings, REFUND_SINK_SPOOL_DIR=settings.spool_dir)


class Ingest:
    """`gunicorn "ingest:create_app()"` with 2 workers, as `refund-sink ingest` runs it; on
    `port` when given (a restarted ingest keeps its address), its log appended to."""

    def __init__(self, settings: Settings, log_dir: Path, port: int | None = None):
        self.port = port or free_port()
        self.log = log_dir / f"ingest-{settings.queue}.log"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                gunicorn_command(f"127.0.0.1:{self.port}", 2), env=environment(settings),
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until(self._healthy, 60, f"ingest not up: {self.log}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"ingest exited: {self.log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the master and its workers together, then wait for all of them: a master
        that dies on its way out (a failing `child_exit` hook) would otherwise leave its
        workers serving the port."""
        try:
            master = psutil.Process(self.process.pid)
            processes = [master, *master.children()]
        except psutil.NoSuchProcess:
            processes = []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=30)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        self.process.wait()


class Worker:
    """One `celery worker` (main process + pool children) in its own process group."""

    def __init__(self, settings: Settings, log_dir: Path, concurrency: int = 2):
        self.log = log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        command = [
            sys.executable, str(POISON_WORKER), "worker",
            "--concurrency", str(concurrency), "--queues", settings.queue,
            "--hostname", f"{self.log.stem}@%h", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle",
        ]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                command, env=environment(settings), cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_ready(self) -> None:
        wait_until(lambda: "ready." in self.output(), 90, f"worker not ready: {self.log}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            return [child.pid for child in psutil.Process(self.process.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the whole worker, main process and pool, at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            _stop(self.process, timeout=30)
        with contextlib.suppress(ProcessLookupError):  # pool children of a killed main
            os.killpg(self.process.pid, signal.SIGKILL)


class Pipeline:
    """The ingest and the workers of one scenario, on its own queue and key prefix."""

    def __init__(self, settings: Settings, log_dir: Path, workers: int = 2,
                 concurrency: int = 2):
        self.settings, self.log_dir, self.concurrency = settings, log_dir, concurrency
        self.workers: list[Worker] = []
        self.ingest: Ingest | None = None
        try:
            for _ in range(workers):
                self.add_worker(wait=False)
            self.ingest = Ingest(settings, log_dir)
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        assert self.ingest is not None
        return f"http://127.0.0.1:{self.ingest.port}"

    def add_worker(self, wait: bool = True) -> Worker:
        worker = Worker(self.settings, self.log_dir, self.concurrency)
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop_ingest(self) -> None:
        """SIGTERM the ingest (gunicorn finishes what it is answering): from then on every
        delivery is refused at the connection."""
        assert self.ingest is not None
        self.ingest.stop()

    def start_ingest(self) -> None:
        """A new ingest on the stopped one's port."""
        assert self.ingest is not None
        self.ingest = Ingest(self.settings, self.log_dir, port=self.ingest.port)

    def live_workers(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.alive()]

    def stop(self) -> None:
        """SIGTERM everything at once (a warm shutdown), then wait for each."""
        processes = [worker.process for worker in self.workers]
        if self.ingest is not None:
            processes.append(self.ingest.process)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for worker in self.workers:
            worker.stop()
        if self.ingest is not None:
            self.ingest.stop()
