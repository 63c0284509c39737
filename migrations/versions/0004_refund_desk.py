"""the refund desk: timeline events, risk flags, refunded_at, reasons

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Read by hand. Each delivery that reaches a refund leaves a `refund_events` row (its effect and
origin), written by the apply path from now on; for the past, every claim becomes one event
(`applied` or `duplicate_message`, origin `webhook`, received when the claim was processed):
redeliveries and conflicts before this revision were not recorded, and `stale` cannot be told
after the fact. Risk flags get their table, empty: rules raise flags as refunds change.

Refunds gain `refunded_at` (the first `refunded` message's time) and the after-sale reason
(`rights_reason_type`, `rights_reason`, from the latest message that carries one), both
filled here from the stored messages, page by page.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import refunds.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 1000
KIND_RANK = {'in_progress': 0, 'fund_change': 1, 'refunded': 2}
MESSAGES = sa.table(
    'refund_messages', sa.column('id', sa.Integer), sa.column('shop', sa.String),
    sa.column('refund_id', sa.String), sa.column('fingerprint', sa.String),
    sa.column('kind', sa.String), sa.column('occurred_at', refunds.types.UTCDateTime()),
    sa.column('message', sa.JSON))
REFUNDS = sa.table(
    'refunds', sa.column('shop', sa.String), sa.column('refund_id', sa.String),
    sa.column('refunded_at', refunds.types.UTCDateTime()),
    sa.column('rights_reason_type', sa.String), sa.column('rights_reason', sa.Text))
REASONS = ('rights_reason_type', 'rights_reason')


def upgrade() -> None:
    op.create_table(
        'refund_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop', sa.String(length=255), nullable=False),
        sa.Column('refund_id', sa.String(length=64), nullable=False),
        sa.Column('delivery_id', sa.String(length=255), nullable=False),
        sa.Column('received_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('occurred_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=True),
        sa.Column('price', refunds.types.Money(), nullable=True),
        sa.Column('effect', sa.String(length=32), nullable=False),
        sa.Column('origin', sa.String(length=16), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('recorded_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['message_id'], ['refund_messages.id'],
                                name='fk_refund_events_message_id_refund_messages'),
        sa.PrimaryKeyConstraint('id', name='pk_refund_events'),
    )
    op.create_index('ix_refund_events_refund', 'refund_events',
                    ['shop', 'refund_id', 'occurred_at'], unique=False)
    op.create_index('ix_refund_events_recorded_at', 'refund_events', ['recorded_at'],
                    unique=False)
    op.create_table(
        'refund_flags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('shop', sa.String(length=255), nullable=False),
        sa.Column('refund_id', sa.String(length=64), nullable=False),
        sa.Column('rule', sa.String(length=32), nullable=False),
        sa.Column('details', sa.JSON(), nullable=False),
        sa.Column('raised_at', refunds.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column('acknowledged_at', refunds.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('acknowledged_by', sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint('id', name='pk_refund_flags'),
        sa.UniqueConstraint('shop', 'refund_id', 'rule', name='uq_refund_flags_refund_rule'),
    )
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.add_column(sa.Column('refunded_at', refunds.types.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('rights_reason_type', sa.String(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('rights_reason', sa.Text(), nullable=True))
    _events_from_claims()
    _refunded_at()
    _reasons()


def _events_from_claims() -> None:
    """One event per existing claim, in SQL."""
    claims = sa.table('deliveries', sa.column('shop', sa.String),
                      sa.column('delivery_id', sa.String), sa.column('refund_id', sa.String),
                      sa.column('outcome', sa.String), sa.column('message_id', sa.Integer),
                      sa.column('processed_at', refunds.types.UTCDateTime()))
    messages = sa.table('refund_messages', sa.column('id', sa.Integer),
                        sa.column('occurred_at', refunds.types.UTCDateTime()),
                        sa.column('kind', sa.String), sa.column('price', refunds.types.Money()))
    events = sa.table('refund_events', *(sa.column(name) for name in (
        'shop', 'refund_id', 'delivery_id', 'received_at', 'occurred_at', 'kind', 'price',
        'effect', 'origin', 'message_id', 'recorded_at')))
    source = (
        sa.select(claims.c.shop, claims.c.refund_id, claims.c.delivery_id,
                  claims.c.processed_at, messages.c.occurred_at, messages.c.kind,
                  messages.c.price, claims.c.outcome, sa.literal('webhook'),
                  claims.c.message_id, claims.c.processed_at)
        .select_from(claims.outerjoin(messages, messages.c.id == claims.c.message_id))
        .order_by(claims.c.processed_at, claims.c.shop, claims.c.delivery_id)
    )
    op.execute(events.insert().from_select(
        ['shop', 'refund_id', 'delivery_id', 'received_at', 'occurred_at', 'kind', 'price',
         'effect', 'origin', 'message_id', 'recorded_at'], source))


def _refunded_at() -> None:
    first_refunded = (
        sa.select(sa.func.min(MESSAGES.c.occurred_at))
        .where(MESSAGES.c.shop == REFUNDS.c.shop, MESSAGES.c.refund_id == REFUNDS.c.refund_id,
               MESSAGES.c.kind == 'refunded')
        .scalar_subquery()
    )
    op.execute(REFUNDS.update().values(refunded_at=first_refunded))


def _reasons() -> None:
    """Each refund's reason from its latest message that carries one, in the fold's order
    (time, stage, fingerprint)."""
    bind = op.get_bind()
    found: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {}
    after = 0
    while True:
        page = bind.execute(sa.select(MESSAGES).where(MESSAGES.c.id > after)
                            .order_by(MESSAGES.c.id).limit(PAGE)).all()
        if not page:
            break
        after = page[-1].id
        for row in page:
            after_sale = (row.message or {}).get('after_sale') or {}
            order = (row.occurred_at, KIND_RANK[row.kind], row.fingerprint)
            for name in REASONS:
                value = after_sale.get(name)
                latest = found.setdefault((row.shop, row.refund_id), {}) if value is not None else {}
                if value is not None and (name not in latest or order > latest[name][0]):
                    latest[name] = (order, str(value))
    updates = [{'key_shop': shop, 'key_refund_id': refund_id,
                **{name: latest[name][1] if name in latest else None for name in REASONS}}
               for (shop, refund_id), latest in found.items() if latest]
    if updates:
        bind.execute(REFUNDS.update()
                     .where(REFUNDS.c.shop == sa.bindparam('key_shop'),
                            REFUNDS.c.refund_id == sa.bindparam('key_refund_id'))
                     .values(rights_reason_type=sa.bindparam('rights_reason_type'),
                             rights_reason=sa.bindparam('rights_reason')), updates)


def downgrade() -> None:
    with op.batch_alter_table('refunds') as batch_op:
        batch_op.drop_column('rights_reason')
        batch_op.drop_column('rights_reason_type')
        batch_op.drop_column('refunded_at')
    op.drop_table('refund_flags')
    op.drop_index('ix_refund_events_recorded_at', table_name='refund_events')
    op.drop_index('ix_refund_events_refund', table_name='refund_events')
    op.drop_table('refund_events')
