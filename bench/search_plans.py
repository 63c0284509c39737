"""`python -m bench.search_plans --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
[--refunds 1000000]`: the plan and time of each refund search filter (issue 12) at a million
refunds, to check that every filter is served by an index. See docs/performance.md.

On the server the URL names, it creates a scratch database, migrates it to 0004, fills it in
SQL (`INSERT ... SELECT generate_series`: about 50 shops, 200,000 customers, 5 currencies, 70%
refunded, prices 0.01-5000 around a median of 40, created over two years, about 1% with an
open flag), times migration 0005's index builds, runs VACUUM ANALYZE, and for each case prints
the top of `EXPLAIN (ANALYZE, BUFFERS)` of the very statement the API runs (default limit: 101
rows) with its median execution time, and the median time of `refunds_page` itself (the ORM
loading the rows included). The database is dropped at the end, also on errors."""

from __future__ import annotations

import argparse
import re
import secrets
import statistics
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from refund_sink.operations import upgrade_database
from refunds import queries, search
from refunds.db import session_factory
from refunds.settings import Settings

RUNS = 3
FIRST_DAY = "2023-01-01"  # refunds are created over the two years from here
MIDDLE_CURSOR = queries.encode_cursor("shop-25.example", "")

# Label and query string of each case: every filter alone, ranges at a narrow, a middling and
# a wide bound, then the shop and cursor alone and a few combinations.
CASES: tuple[tuple[str, dict[str, str]], ...] = (
    ("no filter", {}),
    ("order_id", {"order_id": "300000000250000"}),
    ("customer_id", {"customer_id": "4242"}),
    ("status in_progress (30%)", {"status": "in_progress"}),
    ("status refunded (70%)", {"status": "refunded"}),
    ("currency AUD (5%)", {"currency": "AUD"}),
    ("currency USD (50%)", {"currency": "USD"}),
    ("min_amount 3000 (0.01%)", {"min_amount": "3000"}),
    ("min_amount 1000 (0.4%)", {"min_amount": "1000"}),
    ("min_amount 200 (9%)", {"min_amount": "200"}),
    ("min_amount 10 (88%)", {"min_amount": "10"}),
    ("max_amount 1 (0.1%)", {"max_amount": "1"}),
    ("max_amount 10 (12%)", {"max_amount": "10"}),
    ("max_amount 1000 (99.6%)", {"max_amount": "1000"}),
    ("created_from last day (0.1%)", {"created_from": "2024-12-31"}),
    ("created_from last 30 days (4%)", {"created_from": "2024-12-02"}),
    ("created_from second year (50%)", {"created_from": "2024-01-01"}),
    ("created_to first day (0.1%)", {"created_to": "2023-01-02"}),
    ("created_to first 30 days (4%)", {"created_to": "2023-01-31"}),
    ("created one day (0.1%)", {"created_from": "2024-03-01", "created_to": "2024-03-02"}),
    ("updated_since last day (0.1%)", {"updated_since": "2024-12-31"}),
    ("updated_since last 30 days (4%)", {"updated_since": "2024-12-02"}),
    ("updated_since second year (50%)", {"updated_since": "2024-01-01"}),
    ("flagged true (1%)", {"flagged": "true"}),
    ("flagged false (99%)", {"flagged": "false"}),
    ("shop (2%)", {"shop": "shop-07.example"}),
    ("cursor mid-table", {"cursor": MIDDLE_CURSOR}),
    ("shop + created_from last 30 days", {"shop": "shop-07.example",
                                          "created_from": "2024-12-02"}),
    ("currency AUD + min_amount 200", {"currency": "AUD", "min_amount": "200"}),
    ("customer_id + status refunded", {"customer_id": "4242", "status": "refunded"}),
    ("flagged + created_from second year", {"flagged": "true", "created_from": "2024-01-01"}),
)

FILL = [
    "SELECT setseed(0.12)",
    # One row per refund; the random draws come from the inner select, one set per row.
    """
    INSERT INTO refunds (shop, refund_id, order_id, status, refund_price, currency, customer_id,
                         line_items, fund_changes, created_at, updated_at, refunded_at,
                         events_applied, last_applied_at)
    SELECT 'shop-' || lpad(((g / 2) % 50)::text, 2, '0') || '.example',
           (10000000000 + g)::text,
           (300000000000000 + g / 2)::text,
           CASE WHEN done THEN 'refunded' ELSE 'in_progress' END,
           price, currency, customer_id, '[]', '[]', created_at, updated_at,
           CASE WHEN done THEN updated_at END,
           CASE WHEN done THEN 2 ELSE 1 END, updated_at
    FROM (
        SELECT g, random() < 0.7 AS done,
               least(5000, greatest(0.01, round(exp(ln(40) + 1.2 * sqrt(-2 * ln(1 - random()))
                                                   * cos(2 * pi() * random()))::numeric, 2)))
                   AS price,
               (ARRAY['USD', 'USD', 'USD', 'USD', 'USD', 'USD', 'USD', 'USD', 'USD', 'USD',
                      'EUR', 'EUR', 'EUR', 'EUR', 'GBP', 'GBP', 'GBP', 'CAD', 'CAD',
                      'AUD'])[1 + floor(random() * 20)::int] AS currency,
               (1 + floor(random() * 200000))::int::text AS customer_id,
               created_at, created_at + random() * interval '3 days' AS updated_at
        FROM (SELECT g, timestamptz '{first_day} 00:00+00'
                        + (g::float8 / {refunds}) * interval '730 days'
                        + random() * interval '1 hour' AS created_at
              FROM generate_series(1, {refunds}) AS g) AS numbered
    ) AS drawn
    """,
    # 2% of refunds raise amount_over, half of those acknowledged since: 1% open. A few more
    # (0.2%) raise customer_velocity, open, so some refunds have two open flags.
    """
    INSERT INTO refund_flags (shop, refund_id, rule, details, raised_at, acknowledged_at,
                              acknowledged_by)
    SELECT shop, refund_id, 'amount_over', '{{}}', updated_at,
           CASE WHEN random() < 0.5 THEN updated_at + interval '1 day' END, 'bench'
    FROM refunds WHERE random() < 0.02
    """,
    """
    INSERT INTO refund_flags (shop, refund_id, rule, details, raised_at)
    SELECT shop, refund_id, 'customer_velocity', '{{}}', updated_at
    FROM refunds WHERE random() < 0.002
    """,
]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search_plans", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL server to create the scratch database on")
    parser.add_argument("--refunds", type=int, default=1_000_000, help="rows to fill")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    with scratch_database(args.database_url) as url:
        settings = Settings(database_url=url)
        upgrade_database(settings, "0004")
        started = time.monotonic()
        fill(url, args.refunds)
        print(f"filled {args.refunds:,} refunds in {time.monotonic() - started:.1f} s")
        print(f"updating {args.refunds // 50:,} refunds before 0005: "
              f"{time_updates(url, 1):.2f} s")
        started = time.monotonic()
        upgrade_database(settings, "0005")
        print(f"migration 0005 (six indexes, ANALYZE) in {time.monotonic() - started:.1f} s")
        print(f"updating {args.refunds // 50:,} other refunds after 0005: "
              f"{time_updates(url, 2):.2f} s")
        upgrade_database(settings)
        with psycopg.connect(libpq(url), autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
            print_sizes(connection)
        for label, params in CASES:
            print()
            print(report(label, params, settings))
    return 0


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    name = f"search_plans_{secrets.token_hex(4)}"
    with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq(admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fill(url: str, refunds: int) -> None:
    with psycopg.connect(libpq(url)) as connection:
        for statement in FILL:
            connection.execute(statement.format(refunds=refunds, first_day=FIRST_DAY).encode())


def time_updates(url: str, remainder: int) -> float:
    """Seconds to update one refund in 50 as a message does (times, count, price): what the
    indexes cost the apply path, roughly (one statement, not one transaction per refund)."""
    with psycopg.connect(libpq(url)) as connection:
        connection.execute("CHECKPOINT")
        started = time.monotonic()
        connection.execute(
            "UPDATE refunds SET updated_at = updated_at + interval '1 minute', "
            "last_applied_at = updated_at + interval '1 minute', "
            "events_applied = events_applied + 1, refund_price = refund_price + 1 "
            "WHERE refund_id::bigint %% 50 = %s", (remainder,))
        connection.commit()
        return time.monotonic() - started


def print_sizes(connection: psycopg.Connection[Any]) -> None:
    rows = connection.execute(
        "SELECT relname, pg_relation_size(oid) FROM pg_class WHERE relkind IN ('r', 'i') "
        "AND (relname IN ('refunds', 'pk_refunds', 'refund_flags', 'ix_refund_flags_open') "
        "OR relname LIKE 'ix_refunds_%') "
        "ORDER BY relname").fetchall()
    print("sizes: " + ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in rows))


def report(label: str, params: Mapping[str, str], settings: Settings) -> str:
    """The case's parameters, the top of its plan, and its times."""
    filters = search.RefundFilters.from_text(params)
    shop, cursor = params.get("shop"), params.get("cursor")
    statement = search.refunds_query(dialect="postgresql", shop=shop, filters=filters,
                                      limit=queries.DEFAULT_PAGE, cursor=cursor)
    with session_factory(settings)() as session:
        connection = session.connection()
        compiled = statement.compile(dialect=connection.dialect)
        plans = [explain(connection, str(compiled), compiled.params) for _ in range(RUNS)]
        executions = [execution_ms(plan) for plan in plans]
        pages = []
        for _ in range(RUNS):
            started = time.perf_counter()
            page = search.refunds_page(session=session, shop=shop, filters=filters,
                                        cursor=cursor)
            pages.append((time.perf_counter() - started) * 1000)
    query = "&".join(f"{name}={value}" for name, value in params.items())
    lines = [f"## {label}: GET /refunds?{query}",
             *top_nodes(plans[-1]),
             f"   execution {statistics.median(executions):.2f} ms (median of {RUNS}), "
             f"refunds_page {statistics.median(pages):.1f} ms, {len(page.refunds)} refunds"]
    return "\n".join(lines)


def explain(connection: Connection, sql: str, params: Mapping[str, Any]) -> list[str]:
    result = connection.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", dict(params))
    return [str(line) for line in result.scalars()]


def execution_ms(plan: list[str]) -> float:
    [found] = [line for line in plan if line.startswith("Execution Time")]
    return float(found.split()[2])


NODE = re.compile(r"^(\s*)(?:->\s+)?(.+?)\s+\(cost=.*?\) \(actual time=[\d.]+\.\.([\d.]+) "
                  r"rows=(\d+) loops=(\d+)\)")
DETAIL = re.compile(r"^\s*(Index Cond|Filter|Rows Removed by Filter|Buffers|Join Filter): ")
TOP_NODES = 6


def top_nodes(plan: list[str]) -> list[str]:
    """The plan's first nodes with their actual rows and time, their conditions and buffers,
    costs left out."""
    kept: list[str] = []
    nodes = 0
    for line in plan:
        node = NODE.match(line)
        if node:
            nodes += 1
            if nodes > TOP_NODES:
                break
            indent, name, ms, rows, loops = node.groups()
            loops_text = f" loops={loops}" if loops != "1" else ""
            kept.append(f"   {indent}{name} (rows={rows}{loops_text}, {ms} ms)")
        elif DETAIL.match(line) and nodes <= TOP_NODES:
            kept.append(f"   {line}")
    return kept


if __name__ == "__main__":
    sys.exit(main())
