"""reconcile runs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

Read by hand. One new table, empty: `reconcile_runs`, a row per reconcile of a shop (when it
started and finished, its outcome, how many refunds it found missing, differing and only
local, how many it applied, and a one-line error that never holds a token). The reconcile
metrics of /metrics and the last run of /readyz and the console are read from it. The
`shops.last_reconciled_at`/`last_reconcile_outcome` columns stay, written alongside.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunds.types

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'reconcile_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop', sa.String(length=255), nullable=False),
        sa.Column('started_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('finished_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=32), nullable=False),
        sa.Column('missing', sa.Integer(), nullable=False),
        sa.Column('differs', sa.Integer(), nullable=False),
        sa.Column('only_local', sa.Integer(), nullable=False),
        sa.Column('applied', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_reconcile_runs'),
    )
    op.create_index('ix_reconcile_runs_shop', 'reconcile_runs', ['shop'])


def downgrade() -> None:
    op.drop_index('ix_reconcile_runs_shop', table_name='reconcile_runs')
    op.drop_table('reconcile_runs')
