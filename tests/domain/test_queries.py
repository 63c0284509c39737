"""The API's lookups without a shop (a refund by its id, an order's refunds) search an index
that leads with the column, on both databases, instead of reading the refunds table (or the
primary key, which leads with the shop) whole."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from refunds.db import session_factory
from refunds.settings import Settings

LOOKUPS = {
    "refund_id": "SELECT * FROM refunds WHERE refund_id = '7001' ORDER BY shop",
    "order_id": "SELECT * FROM refunds WHERE order_id = '9001' ORDER BY shop, refund_id",
}


@pytest.mark.parametrize("column", sorted(LOOKUPS))
def test_lookups_without_a_shop_use_an_index(settings: Settings, column: str) -> None:
    with session_factory(settings)() as session:
        connection = session.connection()
        leading = {index["column_names"][0] for index in inspect(connection).get_indexes("refunds")}
        assert column in leading
        if connection.dialect.name == "postgresql":
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(session.scalars(text("EXPLAIN " + LOOKUPS[column])))
            assert f"Index Cond: (({column})::text" in plan, plan
            assert "Sort" not in plan, plan  # the index gives the page's order as well
        else:
            rows = session.execute(text("EXPLAIN QUERY PLAN " + LOOKUPS[column])).all()
            plan = "\n".join(str(row[-1]) for row in rows)
            assert plan.startswith("SEARCH refunds USING"), plan
            assert f"({column}=?)" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
