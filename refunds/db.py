"""Engines and sessions for PostgreSQL (production) and SQLite (embedded default)."""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import sqlalchemy.exc
from sqlalchemy import (
    ColumnElement,
    Engine,
    Row,
    Table,
    and_,
    create_engine,
    event,
    insert,
    or_,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from refunds import json_insert
from refunds.models import Base
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
    return create_engine(
        url,
        pool_pre_ping=True,
        hide_parameters=True,  # error messages must not carry customer data
        connect_args={
            "connect_timeout": 5,
            "options": _server_timeouts(settings),
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # No server-side prepared statements: a generic plan chosen while a table was
            # small (or its statistics stale) would be kept as the table grows, and a single
            # shop makes a shop-only index look selective. Planning each statement costs far
            # less than such a scan; it also keeps transaction-mode PgBouncer working.
            "prepare_threshold": None,
        },
    )


def _server_timeouts(settings: Settings) -> str:
    """Bound every wait on the server, below the task's soft time limit, so a stuck statement
    becomes a retryable error instead of a task killed by its hard limit."""
    statement_ms = max(1000, (settings.task_time_limit - 6) * 1000)
    return " ".join(
        (
            f"-c lock_timeout={min(settings.lock_timeout_ms, statement_ms)}",
            f"-c statement_timeout={statement_ms}",
            f"-c idle_in_transaction_session_timeout={settings.task_time_limit * 1000}",
        )
    )


def _sqlite_engine(url: URL) -> Engine:
    """SQLite serializes writers; BEGIN IMMEDIATE makes each transaction take the lock up front
    so a read-then-write apply can never be interleaved with another writer."""
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": 30})

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


def database_answers(settings: Settings) -> bool:
    """Whether the database takes a query now: one `SELECT 1` on a pooled (pre-pinged)
    connection, bounded by the connect timeout."""
    try:
        with session_factory(settings)() as session:
            session.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError):
        return False
    return True


def insert_ignore(
    session: Session,
    model: type[Base],
    values: Mapping[str, Any],
    conflict: list[str],
    returning: str | None = None,
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING; the inserted row's `returning` column (default: the
    first conflict column), or None when a row with that key already existed.

    On PostgreSQL a concurrent insert of the same key waits for the other transaction, so
    exactly one of two racing workers gets a value. RETURNING tells the outcome: psycopg's
    rowcount is not reliable for this statement."""
    statement = _insert_ignore(session.get_bind().dialect.name, table_of(model), tuple(conflict),
                               (returning or conflict[0],))
    return session.execute(statement, dict(values)).scalar()


def insert_ignore_many(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    conflict: list[str],
    returning: tuple[str, ...] = (),
) -> Sequence[Row[Any]]:
    """`insert_ignore` for many rows (all with the same keys) in one round trip: on PostgreSQL
    one short statement with the rows as JSON (`refunds.json_insert`), elsewhere SQLAlchemy's
    "insertmanyvalues"; the `returning` columns of the rows that were inserted, in no promised
    order. Rows are inserted in the given order, which is the order their key locks are
    taken."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        sent = json_insert.insert_rows(session, table_of(model), rows, tuple(conflict), returning)
        if sent is not None:
            return sent
    statement = _insert_ignore(dialect, table_of(model), tuple(conflict), returning)
    result = session.execute(statement, [dict(row) for row in rows])
    return result.all() if returning else []


def insert_many(session: Session, model: type[Base], rows: Sequence[Mapping[str, Any]]) -> None:
    """Plain INSERT of many rows (all with the same keys) in one round trip, as
    `insert_ignore_many` sends them."""
    if not rows:
        return
    postgresql = session.get_bind().dialect.name == "postgresql"
    if not postgresql or json_insert.insert_rows(session, table_of(model), rows) is None:
        session.execute(insert(table_of(model)), [dict(row) for row in rows])


def in_pairs(
    first: Any, second: Any, pairs: Collection[tuple[str, str]]
) -> ColumnElement[bool]:
    """`first = a AND second IN (...)` per distinct first value, for keys such as (shop,
    refund id): with a row-value IN over one shop, PostgreSQL factors the shop out and may
    scan the whole shop through its index."""
    by_first: dict[str, list[str]] = defaultdict(list)
    for value, other in pairs:
        by_first[value].append(other)
    return or_(*(and_(first == value, second.in_(others)) for value, others in by_first.items()))


def table_of(model: type[Base]) -> Table:
    """A declarative model's table; SQLAlchemy types `__table__` as any FromClause."""
    return cast(Table, model.__table__)


@functools.cache
def _insert_ignore(
    dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    """Built once per table: values travel as parameters, so the hot path neither rebuilds
    nor recompiles the statement."""
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement: Any = insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    return statement


def describe(error: BaseException) -> str:
    """One line naming the failure, without SQL parameters (they may hold customer data)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}"[:500]
