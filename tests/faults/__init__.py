"""The fault runner: the real stack (PostgreSQL, Redis, gunicorn ingest, Celery workers) driven
through failure scenarios, every refund checked against the oracle.

Run from the repository root: ``python -m tests.faults [--scenario NAME ...] [--size N]``."""

import sys
from pathlib import Path

# The test helpers it shares with the suite import each other as top-level modules, as
# pytest's conftest makes them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
