"""delivery identity per shop, body digests, fingerprint v2

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Read by hand. A delivery is identified by (shop, delivery id): the claim's and the dead
letter's keys gain the shop; the raw archive keeps each body a key came with (its SHA-256 in
the key), and the claim and the dead letter record their body's digest, so another body under
the same key is told apart (a conflict) instead of taken for a resend.

Message fingerprints move to version 2 (`schemas.fingerprint`), recomputed here from each
stored message's JSON, so a message recorded before the upgrade and resent after it is still
a duplicate. A row whose version-2 fingerprint equals that of an earlier message of its
refund keeps its version-1 fingerprint: the two were recorded as distinct messages. The
fingerprint also breaks ties between messages of one refund with the same time and kind, so
the refunds holding such a tie are recomputed here, in the order the code uses from now on
(otherwise the next message would move them). Everything is read page by page.

Delivery ids that were digests (no webhook-id header) stay as they were: a resend after the
upgrade gets the new digest (shop included) and is recognized by its content instead.
"""

import hashlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from alembic import op

import refunds.types
from refunds.state import KIND_RANK, fold
from schemas.fingerprint import fingerprint_v2

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 1000
REFOLDED = ('status', 'refund_price', 'order_id', 'currency', 'customer_id', 'note',
            'line_items', 'created_at', 'updated_at', 'events_applied')
MESSAGES = sa.table(
    'refund_messages', sa.column('id', sa.Integer), sa.column('shop', sa.String),
    sa.column('refund_id', sa.String), sa.column('fingerprint', sa.String),
    sa.column('fingerprint_version', sa.Integer), sa.column('kind', sa.String),
    sa.column('occurred_at', refunds.types.UTCDateTime()),
    sa.column('created_at', refunds.types.UTCDateTime()),
    sa.column('price', refunds.types.Money()), sa.column('order_id', sa.String),
    sa.column('currency', sa.String), sa.column('customer_id', sa.String),
    sa.column('note', sa.Text), sa.column('line_items', sa.JSON), sa.column('message', sa.JSON))
REFUNDS = sa.table(
    'refunds', sa.column('shop', sa.String), sa.column('refund_id', sa.String),
    sa.column('status', sa.String), sa.column('refund_price', refunds.types.Money()),
    sa.column('order_id', sa.String), sa.column('currency', sa.String),
    sa.column('customer_id', sa.String), sa.column('note', sa.Text),
    sa.column('line_items', sa.JSON), sa.column('fund_changes', sa.JSON),
    sa.column('created_at', refunds.types.UTCDateTime()),
    sa.column('updated_at', refunds.types.UTCDateTime()),
    sa.column('events_applied', sa.Integer),
    sa.column('last_applied_at', refunds.types.UTCDateTime()))


def upgrade() -> None:
    with op.batch_alter_table('refund_messages') as batch_op:
        batch_op.add_column(sa.Column('fingerprint_version', sa.Integer(), nullable=False,
                                      server_default='1'))
    for key in sorted(_fingerprints_v2()):
        _refold(*key)
    with op.batch_alter_table('refund_messages') as batch_op:
        batch_op.alter_column('fingerprint_version', server_default=None)

    for table in ('raw_deliveries', 'deliveries', 'dead_letters'):
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=True))
    _body_digests()
    with op.batch_alter_table('raw_deliveries') as batch_op:
        batch_op.alter_column('body_sha256', nullable=False)
        batch_op.drop_constraint('pk_raw_deliveries', type_='primary')
        batch_op.create_primary_key('pk_raw_deliveries', ['shop', 'delivery_id', 'body_sha256'])
    with op.batch_alter_table('deliveries') as batch_op:
        batch_op.alter_column('body_sha256', nullable=False)
        batch_op.drop_constraint('pk_deliveries', type_='primary')
        batch_op.create_primary_key('pk_deliveries', ['shop', 'delivery_id'])
    with op.batch_alter_table('dead_letters') as batch_op:
        batch_op.alter_column('body_sha256', nullable=False)
        batch_op.drop_constraint('uq_dead_letters_delivery_id', type_='unique')
        batch_op.create_unique_constraint('uq_dead_letters_shop_delivery_id',
                                          ['shop', 'delivery_id'])


def _fingerprints_v2() -> set[tuple[str, str]]:
    """Recompute every message's fingerprint, refund by refund; the refunds that hold two
    messages with the same time and kind (their order comes from the fingerprint)."""
    bind = op.get_bind()
    tied: set[tuple[str, str]] = set()
    refund: tuple[str, str] | None = None
    taken: set[str] = set()
    moments: set[tuple[Any, int]] = set()
    for page in _pages(bind):
        updates = []
        for row in page:
            if (row.shop, row.refund_id) != refund:
                refund, taken, moments = (row.shop, row.refund_id), set(), set()
            moment = (row.occurred_at, KIND_RANK[row.kind])
            if moment in moments:
                tied.add(refund)
            moments.add(moment)
            fingerprint = fingerprint_v2(row.message)
            if fingerprint not in taken:
                taken.add(fingerprint)
                updates.append({'row_id': row.id, 'new_fingerprint': fingerprint})
        if updates:
            bind.execute(sa.update(MESSAGES).where(MESSAGES.c.id == sa.bindparam('row_id'))
                         .values(fingerprint=sa.bindparam('new_fingerprint'),
                                 fingerprint_version=2), updates)
    return tied


def _pages(bind: Any) -> Iterator[Sequence[Any]]:
    """The messages in (shop, refund id, id) order, a page at a time."""
    order = (MESSAGES.c.shop, MESSAGES.c.refund_id, MESSAGES.c.id)
    columns = (*order, MESSAGES.c.kind, MESSAGES.c.occurred_at, MESSAGES.c.message)
    after: tuple[str, str, int] | None = None
    while True:
        query = sa.select(*columns).order_by(*order).limit(PAGE)
        if after is not None:
            query = query.where(sa.tuple_(*order) > sa.tuple_(*after))
        page = bind.execute(query).all()
        if not page:
            return
        yield page
        after = (page[-1].shop, page[-1].refund_id, page[-1].id)


def _refold(shop: str, refund_id: str) -> None:
    """The refund recomputed from its messages with the fingerprints they now carry."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(MESSAGES).where(MESSAGES.c.shop == shop,
                                                  MESSAGES.c.refund_id == refund_id)).all()
    # The fold has grown fields since (0004 fills them); this revision writes its own columns.
    state = fold(SimpleNamespace(**row._mapping, rights_reason_type=None, rights_reason=None)
                 for row in rows)
    values = {name: getattr(state, name) for name in REFOLDED}
    bind.execute(sa.update(REFUNDS)
                 .where(REFUNDS.c.shop == shop, REFUNDS.c.refund_id == refund_id)
                 .values(**values, last_applied_at=datetime.now(UTC),
                         fund_changes=[change.as_json() for change in state.fund_changes]))


def _body_digests() -> None:
    """Each archived and dead-lettered body's SHA-256, in SQL; a claim takes the digest of
    the body archived under its id (the schema kept one body per delivery id)."""
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        bind.connection.driver_connection.create_function(
            'sha256_hex', 1, lambda body: hashlib.sha256(body).hexdigest(), deterministic=True)
    for name in ('raw_deliveries', 'dead_letters'):
        table = sa.table(name, sa.column('body', sa.LargeBinary),
                         sa.column('body_sha256', sa.String))
        digest = (sa.func.sha256_hex(table.c.body) if bind.dialect.name == 'sqlite'
                  else sa.func.encode(sa.func.sha256(table.c.body), 'hex'))
        bind.execute(sa.update(table).values(body_sha256=digest))
    archive = sa.table('raw_deliveries', sa.column('delivery_id', sa.String),
                       sa.column('body_sha256', sa.String))
    claims = sa.table('deliveries', sa.column('delivery_id', sa.String),
                      sa.column('body_sha256', sa.String))
    archived = (sa.select(archive.c.body_sha256)
                .where(archive.c.delivery_id == claims.c.delivery_id).scalar_subquery())
    bind.execute(sa.update(claims).values(body_sha256=archived))
    # A claim without its archived body (none are expected) gets the digest of no body.
    bind.execute(sa.update(claims).where(claims.c.body_sha256.is_(None))
                 .values(body_sha256=hashlib.sha256(b'').hexdigest()))


def downgrade() -> None:
    """Not supported: the previous schema has room for neither a second body under a
    delivery id nor one delivery id in two shops. Restore the backup taken before upgrading."""
    raise NotImplementedError("0002 cannot be downgraded; restore a backup instead")
