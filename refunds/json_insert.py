"""Many rows into one PostgreSQL table as one short statement with one parameter: the rows as
a JSON array, which PostgreSQL turns back into typed rows (`json_populate_recordset`).

SQLAlchemy's multi-row `VALUES` grows with the rows (a list of 100 messages is some 2,000
parameters and 30 kB of SQL), so psycopg parses every such statement afresh (it caches only
short ones with few parameters) and PostgreSQL plans each: about a fifth of a worker's time
per list (docs/performance.md). Here the statement text depends only on the table and its
columns, and the rows travel as one JSON text that Python's C encoder writes. (Arrays per
column were tried first: psycopg escapes each element of a text array with a regular
expression, which cost more than it saved.)"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Dialect, LargeBinary, Row, Table, TextClause, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator, TypeEngine


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> Sequence[Row[Any]] | None:
    """`INSERT` of every row (all with the same keys) in the given order, `ON CONFLICT
    (conflict) DO NOTHING` when a conflict key is named; the `returning` columns of the rows
    inserted. None, with nothing sent, when the rows cannot travel as JSON: PostgreSQL does
    not turn a NUL (`\\u0000`, valid in a stored `json` value) back into text."""
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    statement, converters = _statement(dialect, table, names, conflict, returning)
    converted = [{name: convert(row[name]) if convert else row[name]
                  for name, convert in zip(names, converters, strict=True)} for row in rows]
    # no `default`: a value JSON has no form for inside a JSON column is an error, as with
    # SQLAlchemy's own serializer; ensure_ascii off: text travels as the client encoding's
    payload = json.dumps(converted, ensure_ascii=False)
    if "\\u0000" in payload:
        return None
    result = session.execute(statement, {"rows": payload})
    return result.all() if returning else []


@functools.cache
def _statement(
    dialect: Dialect, table: Table, names: tuple[str, ...], conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> tuple[TextClause, list[Callable[[Any], Any] | None]]:
    """The statement, and for each column that needs one the conversion of its value to the
    JSON text PostgreSQL reads for the column: our types' own (`refunds.types`: UTC times,
    exact money, as SQLAlchemy applies it; not the driver's, which hands money over as a
    float), then exact decimals and ISO times as strings, bytea in hex. JSON columns nest
    as they are: their None is SQL NULL (SQLAlchemy's insert stored JSON `null`; both read
    back as None)."""
    quote = dialect.identifier_preparer.quote
    columns = [table.c[name] for name in names]
    listed = ", ".join(quote(name) for name in names)
    sql = (f"INSERT INTO {quote(table.name)} ({listed}) "  # noqa: S608 - names from the model
           f"SELECT {listed} FROM json_populate_recordset(NULL::{quote(table.name)}, :rows) "
           f"WITH ORDINALITY AS given "
           "ORDER BY ordinality")  # in the given order: the order their key locks are taken
    if conflict:
        sql += f" ON CONFLICT ({', '.join(quote(name) for name in conflict)}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(quote(name) for name in returning)}"
    return text(sql), [_converter(column.type, dialect) for column in columns]


def _converter(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    if isinstance(kind, TypeDecorator):
        bind = functools.partial(kind.process_bind_param, dialect=dialect)
        return lambda value: _scalar(bind(value))
    if isinstance(kind, LargeBinary):
        return lambda value: None if value is None else "\\x" + value.hex()
    return None


def _scalar(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value
