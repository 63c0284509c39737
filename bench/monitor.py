"""Sampling in the background: RSS of every process of the stack (peak, first, last) and the
queue's lag over time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil


@dataclass
class Sampler:
    roots: list[int]
    interval: float = 0.5
    probes: dict[str, Callable[[], float]] = field(default_factory=dict)
    first: dict[int, int] = field(default_factory=dict)
    last: dict[int, int] = field(default_factory=dict)
    peak: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    series: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        for proc in self.processes():
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                continue
            self.first.setdefault(proc.pid, rss)
            self.last[proc.pid] = rss
            self.peak[proc.pid] = max(rss, self.peak.get(proc.pid, 0))
            if proc.pid not in self.names:
                self.names[proc.pid] = role(proc, self.roots)
        if self.probes:
            values = {}
            for name, probe in self.probes.items():
                try:
                    values[name] = probe()
                except Exception:  # a failed probe is a gap, not a failure
                    values[name] = float("nan")
            self.series.append((time.monotonic() - self.started, values))

    def processes(self) -> list[psutil.Process]:
        found = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                found += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return found

    def mark_start(self) -> None:
        """Forget RSS seen so far: 'start' means now (after warm-up)."""
        self.first.clear()


def role(proc: psutil.Process, roots: list[int]) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return f"pid {proc.pid}"
    if "redis-server" in cmd:
        return "redis-server"
    kind = "gunicorn" if "gunicorn" in cmd else "celery" if "celery" in cmd else cmd[:30]
    return f"{kind} {'main' if proc.pid in roots else 'child'}"
