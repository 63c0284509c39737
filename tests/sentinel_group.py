"""A Redis Sentinel group on this machine for tests and the fault runner: a master, a replica
and one Sentinel (quorum 1) on free ports in a directory, each server keeping an AOF as
deployed, and a failover on demand (`SENTINEL FAILOVER`, as an operator forces one)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from backing_services import stop

from refund_sink.servers import free_port, redis_binary, wait_for_redis

MASTER_NAME = "mymaster"


class SentinelGroup:
    def __init__(self, directory: Path):
        self.directory = directory.resolve()
        self.ports = [free_port(), free_port()]  # the two data servers
        self.sentinel_port = free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0"

    def __enter__(self) -> SentinelGroup:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        try:
            first, second = self.ports
            self._server(first)
            self._server(second, "--replicaof", "127.0.0.1", str(first))
            self._sentinel(first)
            self.wait_replicated(60)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process)
        self.processes.clear()

    def master_port(self) -> int:
        sentinel: Any = self._sentinel_client()
        _host, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def client(self, port: int | None = None) -> redis.Redis:
        """A client of one data server (default: the current master)."""
        return redis.Redis(port=port or self.master_port(), socket_connect_timeout=2,
                           socket_timeout=10)

    def failover(self, timeout: float = 30) -> str:
        """Promote the replica; returns what happened, once the Sentinel names the new master
        and that server says it is one."""
        old = self.master_port()
        started = time.monotonic()
        sentinel: Any = self._sentinel_client()
        sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        while time.monotonic() - started < timeout:
            new = self.master_port()
            if new != old and self._role(new) == "master":
                return f"master {old} -> {new} in {time.monotonic() - started:.1f}s"
            time.sleep(0.1)
        raise TimeoutError(f"no failover from {old} within {timeout:.0f}s")

    def wait_replicated(self, timeout: float) -> float:
        """Until the master has an online replica in sync and the Sentinel counts it as a
        replica with its link up (so WAIT succeeds and the next failover can run)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self._replicated():
                return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"no replica in sync within {timeout:.0f}s")

    def _replicated(self) -> bool:
        try:
            master = self.master_port()
            info: dict[str, Any] = self.client(master).info("replication")
            replicas: list[dict[str, Any]] = self._sentinel_client().sentinel_slaves(MASTER_NAME)
        except redis.RedisError:
            return False
        online = info.get("role") == "master" and any(
            isinstance(value, dict) and value.get("state") == "online"
            for key, value in info.items() if key.startswith("slave"))
        known = any(r.get("master-link-status") == "ok" and r.get("role-reported") == "slave"
                    and not r.get("is_disconnected") and not r.get("is_sdown") for r in replicas)
        return online and known

    def _role(self, port: int) -> str:
        try:
            return str(self.client(port).info("replication").get("role"))
        except redis.RedisError:
            return "unknown"

    def _sentinel_client(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_connect_timeout=2, socket_timeout=5,
                           decode_responses=True)

    def _server(self, port: int, *extra: str) -> None:
        directory = self.directory / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--logfile", str(directory / "redis.log"),
            # a replica (re)synchronises at once, not after the default 5 s diskless delay
            "--repl-diskless-sync-delay", "0", *extra,
        ]
        self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        wait_for_redis(f"redis://127.0.0.1:{port}/0", self.processes[-1])

    def _sentinel(self, master_port: int) -> None:
        directory = self.directory / "sentinel"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # the Sentinel rewrites it: its own file
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        self.processes.append(subprocess.Popen([redis_binary(), str(config), "--sentinel"],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        wait_for_redis(f"redis://127.0.0.1:{self.sentinel_port}/0", self.processes[-1])

    def logs(self) -> str:
        """Every server's and the Sentinel's log, for a failure message."""
        return "\n".join(f"--- {path}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted(self.directory.rglob("*.log")))
