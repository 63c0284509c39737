"""`python -m tests.faults [--scenario NAME ...] [--size N]`, from the repository root."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from refund_sink.operations import upgrade_database
from refunds.settings import Settings

from .measure import Result
from .scenarios import SCENARIOS, Context, run_scenario
from .stack import Postgres, Redis, RunSettings

COLUMNS = ("scenario", "sent", "2xx", "applied", "dead-lettered", "lost", "doubled",
           "mismatched", "seconds")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable); default: all")
    parser.add_argument("--size", type=float, default=1.0,
                        help="scale deliveries and outage lengths (0.05 for a quick run)")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size,
                        help="REFUND_SINK_BATCH_SIZE for the workers (1: one message per task)")
    parser.add_argument("--keep", type=Path,
                        help="copy the server and process logs here before cleaning up")
    args = parser.parse_args(argv)
    if not 0 < args.size <= 10:
        parser.error("--size must be in (0, 10]")
    return args


def row(values: tuple[object, ...]) -> str:
    return "| " + " | ".join(str(value) for value in values) + " |"


def table_row(result: Result) -> str:
    return row((result.scenario, result.sent, result.ok, result.applied, result.dead_lettered,
                result.lost, result.doubled, result.mismatched, f"{result.seconds:.0f}"))


def main(argv: list[str]) -> int:
    args = parse(argv)
    names = args.scenario or list(SCENARIOS)
    root = Path(tempfile.mkdtemp(prefix="refund-sink-faults-"))
    postgres, redis = Postgres(root / "postgres"), Redis(root / "redis")
    results: list[Result] = []
    try:
        postgres.init()
        redis.start()
        upgrade_database(Settings(database_url=postgres.url))
        run = (RunSettings(batch_size=args.batch_size) if args.size >= 0.5
               else RunSettings.quick(args.batch_size))
        context = Context(postgres, redis, run, root, args.size)
        print(row(COLUMNS))
        print(row(tuple("---" for _ in COLUMNS)), flush=True)
        for name in names:
            result = run_scenario(context, name, SCENARIOS[name])
            results.append(result)
            print(table_row(result), flush=True)
    finally:
        redis.stop()
        if postgres.running():
            postgres.stop("fast")
        if args.keep:
            shutil.copytree(root, args.keep / time.strftime("faults-%Y%m%d-%H%M%S"),
                            ignore=shutil.ignore_patterns("data", "spool", "*.aof", "*.rdb",
                                                          "appendonlydir"))
        shutil.rmtree(root, ignore_errors=True)
    print()
    for result in results:
        print(f"{result.scenario}: {'ok' if result.passed else 'FAILED'}")
        for line in result.failures:
            print(f"  FAILED: {line}")
        for line in result.notes:
            if not line.startswith("logs:"):
                print(f"  {line}")
    return 0 if all(result.passed for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
