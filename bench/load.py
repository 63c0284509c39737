"""Load generators. `wrk` (C, closed loop) for the maximum rates of S1, with a Lua script that
cycles through pre-signed requests (HMAC cannot be computed in wrk's Lua); and a Python
generator (asyncio on raw sockets, several processes) for what wrk cannot do: a fixed
open-loop rate with latency measured from each request's scheduled time (S2, S5), and an exact
number of distinct deliveries (S4)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEPARATOR = b"\n--BENCH-SEP--\n"
WRK_SCRIPT = """
local reqs, n, idx = {}, 0, 0
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while true do
    local s, e = string.find(data, "\\n--BENCH-SEP--\\n", pos, true)
    if not s then break end
    n = n + 1
    reqs[n] = string.sub(data, pos, s - 1)
    pos = e + 1
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  idx = math.random(n)
end
function request()
  idx = idx % n + 1
  return reqs[idx]
end
"""


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0  # 2xx answers
    errors: int = 0  # non-2xx answers and socket errors
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, open loop only
    generator_cpu: float = 0.0  # CPU seconds the generator itself used
    tool: str = "python"

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def merge(self, other: LoadResult) -> None:
        self.sent += other.sent
        self.accepted += other.accepted
        self.errors += other.errors
        self.seconds = max(self.seconds, other.seconds)
        self.latencies += other.latencies
        self.generator_cpu += other.generator_cpu


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- wrk --------------------------------------------------------------------------------------
def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, requests: Sequence[bytes], seconds: float, connections: int,
            threads: int, workdir: Path) -> LoadResult:
    data = workdir / "wrk-requests.bin"
    data.write_bytes(b"".join(r + SEPARATOR for r in requests))
    script = workdir / "wrk-cycle.lua"
    script.write_text(WRK_SCRIPT)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s",
               "-s", str(script), url, "--", str(data)]
    before = os.times()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = os.times()
    return parse_wrk(out, after.children_user + after.children_system
                     - before.children_user - before.children_system)


def parse_wrk(out: str, cpu: float) -> LoadResult:
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    seconds = float(total.group(2)) / (1000 if total.group(3) == "ms" else 1)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    sent = int(total.group(1))
    # read errors are how wrk counts a server closing after its answer (gunicorn sync), not
    # a failure; connect/write/timeout errors are.
    socket_errors = sum(int(sock.group(i)) for i in (1, 3, 4)) if sock else 0
    return LoadResult(sent=sent, accepted=sent - bad, errors=bad + socket_errors,
                      seconds=seconds, generator_cpu=cpu, tool="wrk")


# -- python: raw-socket HTTP/1.1 client -----------------------------------------------------
class Connection:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, payload: bytes) -> int:
        """Send one request, read its answer; returns the status (0 on a socket error)."""
        for attempt in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                assert self.reader is not None
                self.writer.write(payload)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                lower = head.lower()
                match = re.search(rb"content-length: *(\d+)", lower)
                if match:
                    await self.reader.readexactly(int(match.group(1)))
                if b"connection: close" in lower:
                    self.close()
                return status
            except (OSError, asyncio.IncompleteReadError, ValueError):
                self.close()
                if attempt:
                    return 0
        return 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


_REQUESTS: Sequence[bytes] = ()  # set before forking the generator processes


async def _closed(address: tuple[str, int], indices: range, connections: int) -> LoadResult:
    result = LoadResult()
    todo = iter(indices)

    async def client() -> None:
        conn = Connection(*address)
        for index in todo:
            status = await conn.request(_REQUESTS[index])
            result.sent += 1
            if 200 <= status < 300:
                result.accepted += 1
            else:
                result.errors += 1
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


async def _open(address: tuple[str, int], indices: range, rate: float,
                max_connections: int) -> LoadResult:
    """Send request k at start + k/rate whatever happened before (open loop); latency counts
    from that scheduled time, so a stalled server is not hidden (no coordinated omission)."""
    result = LoadResult()
    idle: list[Connection] = []
    slots = asyncio.Semaphore(max_connections)
    started = time.perf_counter()

    async def one(index: int, due: float) -> None:
        async with slots:
            conn = idle.pop() if idle else Connection(*address)
            status = await conn.request(_REQUESTS[index])
            result.latencies.append(time.perf_counter() - due)
            idle.append(conn)
        result.sent += 1
        if 200 <= status < 300:
            result.accepted += 1
        else:
            result.errors += 1

    tasks = []
    for k, index in enumerate(indices):
        due = started + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - started
    for conn in idle:
        conn.close()
    return result


def _child(args: tuple[str, tuple[str, int], range, float, int]) -> LoadResult:
    mode, address, indices, rate, connections = args
    before = time.process_time()
    if mode == "closed":
        result = asyncio.run(_closed(address, indices, connections))
    else:
        result = asyncio.run(_open(address, indices, rate, connections))
    result.generator_cpu = time.process_time() - before
    return result


def _default_sigterm() -> None:
    """The pool stops its children with SIGTERM; the benchmark's own handler (clean up, then
    exit), inherited through fork, could make a child exit holding the pool's queue lock
    and leave its sibling blocked on it for ever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_python(address: str, requests: Sequence[bytes], *, processes: int, connections: int,
               rate: float | None = None) -> LoadResult:
    """Send every request once. Closed loop (`rate` None: `connections` outstanding per
    process) or open loop at `rate` requests/s in total."""
    global _REQUESTS
    host, port = address.rsplit(":", 1)
    _REQUESTS = requests
    per_rate = (rate or 0.0) / processes
    mode = "closed" if rate is None else "open"
    jobs = [(mode, (host, int(port)), range(p, len(requests), processes), per_rate, connections)
            for p in range(processes)]
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(processes, initializer=_default_sigterm) as pool:
        parts = pool.map(_child, jobs)
    total = LoadResult()
    for part in parts:
        total.merge(part)
    _REQUESTS = ()
    return total
