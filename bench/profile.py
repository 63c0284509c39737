"""`python -m bench.profile ingest|worker [--seconds 20]`: py-spy on the ingest's gunicorn
workers under wrk load, or on the Celery pool processes draining a filled queue; prints the
hottest functions (own samples and inclusive samples, all processes together)."""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from bench import load
from bench.payloads import deliveries
from bench.scenarios import fill_queue
from bench.stack import Config, Stack
from refunds.settings import Settings

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def py_spy(pid: int, seconds: float, out: Path) -> None:
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    subprocess.run([binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
                    "--duration", f"{seconds:.0f}", "--rate", "200", "--nonblocking",
                    "--output", str(out)], check=True, capture_output=True)


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match.group('func')} ({path})"


def hotspots(collapsed: Path, top: int = 20) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top * 2)]
    return "\n".join(lines)


def profile_ingest(stack: Stack, seconds: float) -> Path:
    proc, address = stack.start_http()
    requests = [d.request_bytes("bench") for d in deliveries(2000, "prof", stack.secret)]
    out = stack.tmp / "ingest.txt"
    loader = threading.Thread(target=load.run_wrk, args=(
        f"http://{address}/webhooks/genstore", requests, seconds + 4, 32, 1, stack.tmp))
    loader.start()
    py_spy(proc.pid, seconds, out)
    loader.join()
    stack.stop(proc)
    return out


def profile_worker(stack: Stack, seconds: float) -> Path:
    # enough queued work to keep the workers busy for the whole profile at batch speed
    fill_queue(stack, list(deliveries(int(seconds * 2000), "prof", stack.secret)))
    worker = stack.start_workers()
    out = stack.tmp / "worker.txt"
    py_spy(worker.pid, seconds, out)
    stack.stop(worker)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("target", choices=("ingest", "worker"))
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--save", type=Path, help="keep the collapsed stacks here")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size,
                        help="REFUND_SINK_BATCH_SIZE (and prefetch) for the workers")
    args = parser.parse_args(argv)
    config = Config(batch_size=args.batch_size, prefetch=args.batch_size)
    with Stack(config) as stack:
        out = (profile_ingest if args.target == "ingest" else profile_worker)(stack, args.seconds)
        print(hotspots(out))
        if args.save:
            args.save.write_bytes(out.read_bytes())
    return 0


if __name__ == "__main__":
    sys.exit(main())
