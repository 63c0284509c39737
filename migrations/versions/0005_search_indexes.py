"""search indexes: customer, status, currency, creation time, price, open flags

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Read by hand. `GET /refunds` gains filters (issue 12); each is served by an index instead of a
read of the whole table, measured at a million refunds in docs/performance.md ("Search at
1,000,000 refunds"). Equality filters (customer id, status, currency) get an index that leads
with the column and carries the (shop, refund id) order the API pages by, so a page reads
only its own rows, already sorted. Ranges (creation time, price) get a plain index: a narrow
range is read through it and sorted, a wide one is served by the primary key, which finds a
page's rows early. Open flags (`flagged=true`) get a partial index of (shop, refund id) over
the flags not yet acknowledged: small, and in page order. The order id and update time
already have theirs (0003, 0001).

On PostgreSQL the price's statistics get 1,000 buckets instead of 100, and the table is
analyzed: prices spread over six orders of magnitude, and with 100 buckets the top one spans
some 500 to 5,000, so the planner took `min_amount=3000` (143 of a million refunds)
for 4,500 rows and read the primary key for a page it never filled (1.3 s instead of 1.4 ms).

Every update of a refund now writes nine index entries instead of four (the update time
changes with each message, so updates of refunds are never HOT). On PostgreSQL each index is
built under a lock that holds writes to its table back while it is built: 13-23 s for the six
and the ANALYZE at a million refunds on the 2-core VM.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text('acknowledged_at IS NULL')


def upgrade() -> None:
    op.create_index('ix_refunds_customer_id', 'refunds', ['customer_id', 'shop', 'refund_id'])
    op.create_index('ix_refunds_status', 'refunds', ['status', 'shop', 'refund_id'])
    op.create_index('ix_refunds_currency', 'refunds', ['currency', 'shop', 'refund_id'])
    op.create_index('ix_refunds_created_at', 'refunds', ['created_at'])
    op.create_index('ix_refunds_refunded_at', 'refunds', ['refunded_at'])
    op.create_index('ix_refunds_refund_price', 'refunds', ['refund_price'])
    op.create_index('ix_refund_flags_open', 'refund_flags', ['shop', 'refund_id'],
                    postgresql_where=OPEN, sqlite_where=OPEN)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE refunds ALTER COLUMN refund_price SET STATISTICS 1000')
        op.execute('ANALYZE refunds')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE refunds ALTER COLUMN refund_price SET STATISTICS -1')
    op.drop_index('ix_refund_flags_open', table_name='refund_flags')
    op.drop_index('ix_refunds_refund_price', table_name='refunds')
    op.drop_index('ix_refunds_refunded_at', table_name='refunds')
    op.drop_index('ix_refunds_created_at', table_name='refunds')
    op.drop_index('ix_refunds_currency', table_name='refunds')
    op.drop_index('ix_refunds_status', table_name='refunds')
    op.drop_index('ix_refunds_customer_id', table_name='refunds')
