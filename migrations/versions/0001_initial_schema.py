"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-27

Read by hand: every table the core's models declare, constraint names from the naming
convention, money as refunds.types.Money (NUMERIC on PostgreSQL, text on SQLite).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import refunds.types

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.String(length=255), nullable=False),
    sa.Column('created_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash'))
    )
    op.create_table('dead_letters',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=True),
    sa.Column('shop', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('first_failed_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_failed_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dead_letters')),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_dead_letters_delivery_id'))
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_reason_state', ['reason', 'state'], unique=False)

    op.create_table('raw_deliveries',
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=True),
    sa.Column('shop', sa.String(length=255), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.Column('received_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('archived_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_raw_deliveries'))
    )
    op.create_table('refund_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('shop', sa.String(length=255), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('occurred_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('price', refunds.types.Money(), nullable=True),
    sa.Column('order_id', sa.String(length=64), nullable=True),
    sa.Column('currency', sa.String(length=16), nullable=True),
    sa.Column('customer_id', sa.String(length=64), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('line_items', sa.JSON(), nullable=True),
    sa.Column('message', sa.JSON(), nullable=False),
    sa.Column('recorded_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refund_messages')),
    sa.UniqueConstraint('shop', 'refund_id', 'fingerprint', name='uq_refund_messages_content')
    )
    op.create_table('refunds',
    sa.Column('shop', sa.String(length=255), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('refund_price', refunds.types.Money(), nullable=True),
    sa.Column('currency', sa.String(length=16), nullable=True),
    sa.Column('customer_id', sa.String(length=64), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('line_items', sa.JSON(), nullable=True),
    sa.Column('fund_changes', sa.JSON(), nullable=False),
    sa.Column('created_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('events_applied', sa.Integer(), nullable=False),
    sa.Column('last_applied_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('shop', 'refund_id', name=op.f('pk_refunds'))
    )
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index('ix_refunds_shop_order_id', ['shop', 'order_id'], unique=False)
        batch_op.create_index('ix_refunds_updated_at', ['updated_at'], unique=False)

    op.create_table('deliveries',
    sa.Column('delivery_id', sa.String(length=255), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=True),
    sa.Column('shop', sa.String(length=255), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('processed_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['refund_messages.id'], name=op.f('fk_deliveries_message_id_refund_messages')),
    sa.PrimaryKeyConstraint('delivery_id', name=op.f('pk_deliveries'))
    )


def downgrade() -> None:
    op.drop_table('deliveries')
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('ix_refunds_updated_at')
        batch_op.drop_index('ix_refunds_shop_order_id')

    op.drop_table('refunds')
    op.drop_table('refund_messages')
    op.drop_table('raw_deliveries')
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_reason_state')

    op.drop_table('dead_letters')
    op.drop_table('api_tokens')
