"""Alembic migrations; shipped as a package so `refund-sink db upgrade` finds them when installed."""
