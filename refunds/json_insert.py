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

from sqlalchemy import Dialect, Row, Table, TextClause, text
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    conflict: tuple[str, ...] = (),
    returning: tuple[str, ...] = (),
) -> Sequence[Row[Any]]:
    """`INSERT` of every row (all with the same keys) in the given order, `ON CONFLICT
    (conflict) DO NOTHING` when a conflict key is named; the `returning` columns of the rows
    inserted."""
    dialect = session.get_bind().dialect
    names = tuple(rows[0])
    statement, converters = _statement(dialect, table, names, conflict, returning)
    converted = [{name: convert(row[name]) if convert else row[name]
                  for name, convert in zip(names, converters, strict=True)} for row in rows]
    result = session.execute(statement, {"rows": json.dumps(converted, default=_json_value)})
    return result.all() if returning else []


def _json_value(value: Any) -> str:
    """What JSON lacks, in the text form PostgreSQL reads for the column: exact decimals,
    ISO times with their offset, bytea in hex."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    raise TypeError(f"no JSON form for {type(value).__name__}")


@functools.cache
def _statement(
    dialect: Dialect, table: Table, names: tuple[str, ...], conflict: tuple[str, ...],
    returning: tuple[str, ...],
) -> tuple[TextClause, list[Callable[[Any], Any] | None]]:
    """The statement, and the conversion of each column of ours (`refunds.types`: UTC times,
    exact money), not its driver's (which would hand money over as a float); the others'
    values travel as they are (JSON columns nested in the rows' JSON)."""
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
    converters: list[Callable[[Any], Any] | None] = [
        functools.partial(column.type.process_bind_param, dialect=dialect)
        if isinstance(column.type, TypeDecorator) else None
        for column in columns]
    return text(sql), converters
