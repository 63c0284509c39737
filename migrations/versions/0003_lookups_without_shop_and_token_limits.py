"""lookups without a shop, token shop and expiry

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

Read by hand. The API finds a refund by its id, and an order's refunds, without a shop; the
primary key and the old (shop, order id) index lead with the shop, so those lookups read the
whole table. Two indexes lead with the looked-up column and carry the (shop, refund id) order
the API pages by; the (shop, order id) index is dropped, as (order id, shop, refund id) serves
every query it served. On PostgreSQL each index is built under a lock that holds writes to
`refunds` back while it is built (seconds for a million rows).

API tokens gain an optional shop (a token for one shop sees that shop only) and an optional
expiry; existing tokens keep every shop and never expire, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunds.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.create_index('ix_refunds_refund_id', ['refund_id', 'shop'], unique=False)
        batch_op.create_index('ix_refunds_order_id', ['order_id', 'shop', 'refund_id'],
                              unique=False)
        batch_op.drop_index('ix_refunds_shop_order_id')
    with op.batch_alter_table('api_tokens') as batch_op:
        batch_op.add_column(sa.Column('shop', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('expires_at', refunds.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    """Back to 0002: tokens lose their shop and expiry, so a shop token would see every shop
    and an expired one would work again; they are revoked rather than widened."""
    api_tokens = sa.table('api_tokens', sa.column('shop', sa.String),
                          sa.column('expires_at', sa.DateTime),
                          sa.column('revoked_at', sa.DateTime))
    op.execute(api_tokens.update()
               .where(api_tokens.c.revoked_at.is_(None),
                      sa.or_(api_tokens.c.shop.is_not(None),
                             api_tokens.c.expires_at.is_not(None)))
               .values(revoked_at=sa.func.current_timestamp()))
    with op.batch_alter_table('api_tokens') as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('shop')
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.create_index('ix_refunds_shop_order_id', ['shop', 'order_id'], unique=False)
        batch_op.drop_index('ix_refunds_order_id')
        batch_op.drop_index('ix_refunds_refund_id')
