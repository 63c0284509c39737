"""shop zone and currency

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

Read by hand. One new nullable column, `shops.currency` (the shop's ISO 4217 currency, read
from Genstore's `shops/info` or set by hand); `shops.iana_timezone` exists since 0006 and is
now filled. Existing shops keep both empty until `refund-sink shop refresh` or `shop set`:
their naive times stay read in GENSTORE_NAIVE_TZ, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('shops', sa.Column('currency', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('shops') as batch:
        batch.drop_column('currency')
