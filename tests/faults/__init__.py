"""The fault runner: the real stack (PostgreSQL, Redis, gunicorn ingest, Celery workers) driven
through failure scenarios, every refund checked against the oracle.

Run from the repository root: ``python -m tests.faults [--scenario NAME ...] [--size N]``."""
