"""Engines and sessions for PostgreSQL (production) and SQLite (embedded default)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from refunds.settings import Settings

SessionFactory = sessionmaker[Session]


def normalize_url(url: str) -> URL:
    """Plain ``postgresql://`` URLs get psycopg 3, the one PostgreSQL driver we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(settings: Settings) -> Engine:
    url = normalize_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    options = f"-c lock_timeout={settings.lock_timeout_ms}"
    return create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5, "options": options},
    )


def _sqlite_engine(url: URL) -> Engine:
    """SQLite serializes writers; BEGIN IMMEDIATE makes each transaction take the lock up front
    so a read-then-write apply can never be interleaved with another writer."""
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


_factories: dict[tuple[int, str], SessionFactory] = {}


def session_factory(settings: Settings) -> SessionFactory:
    """One engine per process and URL: forked Celery and gunicorn children must not share
    the parent's connections."""
    key = (os.getpid(), settings.database_url)
    factory = _factories.get(key)
    if factory is None:
        factory = sessionmaker(make_engine(settings), expire_on_commit=False)
        _factories[key] = factory
    return factory


def insert_ignore(
    session: Session, table: Table, values: Mapping[str, Any], conflict: list[str]
) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row was inserted.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction, so
    exactly one of two racing workers sees True. RETURNING tells the outcome: psycopg's
    rowcount is not reliable for this statement."""
    dialect = sqlite if session.get_bind().dialect.name == "sqlite" else postgresql
    statement = (
        dialect.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=conflict)
        .returning(table.c[conflict[0]])
    )
    return session.execute(statement).first() is not None
