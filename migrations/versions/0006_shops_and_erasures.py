"""shops and their access tokens, compliance erasures

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Read by hand. Two new tables, empty: `shops` (the shops the sink acts for, each with its
Admin API access token encrypted with `REFUND_SINK_SECRET_KEY`, the zone Genstore gives it,
and its last reconcile) and `erasures` (that a `customers/redact` or `shop/redact` delivery
erased data: when, which delivery, how many rows per table; never what was erased).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunds.types

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'shops',
        sa.Column('domain', sa.String(length=255), nullable=False),
        sa.Column('access_token_encrypted', sa.LargeBinary(), nullable=False),
        sa.Column('iana_timezone', sa.String(length=64), nullable=True),
        sa.Column('added_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_reconciled_at', refunds.types.UTCDateTime(timezone=True),
                  nullable=True),
        sa.Column('last_reconcile_outcome', sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint('domain', name='pk_shops'),
    )
    op.create_table(
        'erasures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('topic', sa.String(length=64), nullable=False),
        sa.Column('shop', sa.String(length=255), nullable=False),
        sa.Column('customer_id', sa.String(length=64), nullable=True),
        sa.Column('delivery_id', sa.String(length=255), nullable=False),
        sa.Column('rows', sa.JSON(), nullable=False),
        sa.Column('erased_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name='pk_erasures'),
    )


def downgrade() -> None:
    op.drop_table('erasures')
    op.drop_table('shops')
