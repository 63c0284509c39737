"""delivery identity per shop, body digests, fingerprint v2

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Read by hand. A delivery is identified by (shop, delivery id): the claim's and the dead
letter's keys gain the shop; the raw archive keeps each body a key came with (its SHA-256 in
the key), and the claim records the body that had the effect, so another body under the same
key is told apart as a conflict.

Message fingerprints move to version 2 (`schemas.fingerprint`), recomputed here from each
stored message's JSON, so a message recorded before the upgrade and resent after it is still
a duplicate. A row whose version-2 fingerprint equals that of an earlier message of its
refund keeps its version-1 fingerprint: the two were recorded as distinct messages, and the
migration changes no refund.

Delivery ids that were digests (no webhook-id header) stay as they were: a resend after the
upgrade gets the new digest (shop included) and is recognized by its content instead.
"""

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from schemas.fingerprint import fingerprint_v2

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000


def upgrade() -> None:
    with op.batch_alter_table('refund_messages') as batch_op:
        batch_op.add_column(sa.Column('fingerprint_version', sa.Integer(), nullable=False,
                                      server_default='1'))
    _fingerprints_v2()
    with op.batch_alter_table('refund_messages') as batch_op:
        batch_op.alter_column('fingerprint_version', server_default=None)

    with op.batch_alter_table('raw_deliveries') as batch_op:
        batch_op.add_column(sa.Column('body_sha256', sa.String(length=64), nullable=True))
    with op.batch_alter_table('deliveries') as batch_op:
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
        batch_op.drop_constraint('uq_dead_letters_delivery_id', type_='unique')
        batch_op.create_unique_constraint('uq_dead_letters_shop_delivery_id',
                                          ['shop', 'delivery_id'])


def _fingerprints_v2() -> None:
    bind = op.get_bind()
    messages = sa.table('refund_messages', sa.column('id', sa.Integer),
                        sa.column('shop', sa.String), sa.column('refund_id', sa.String),
                        sa.column('message', sa.JSON), sa.column('fingerprint', sa.String),
                        sa.column('fingerprint_version', sa.Integer))
    taken: dict[tuple[str, str], set[str]] = {}
    updates = []
    query = sa.select(messages).order_by(messages.c.shop, messages.c.refund_id, messages.c.id)
    for row in bind.execute(query):
        fingerprint = fingerprint_v2(row.message)
        seen = taken.setdefault((row.shop, row.refund_id), set())
        if fingerprint not in seen:
            seen.add(fingerprint)
            updates.append({'row_id': row.id, 'new_fingerprint': fingerprint})
    statement = (sa.update(messages).where(messages.c.id == sa.bindparam('row_id'))
                 .values(fingerprint=sa.bindparam('new_fingerprint'), fingerprint_version=2))
    for start in range(0, len(updates), CHUNK):
        bind.execute(statement, updates[start:start + CHUNK])


def _body_digests() -> None:
    """The archive's digests from its bodies; a claim's from the body archived under its id
    (the schema kept one body per delivery id)."""
    bind = op.get_bind()
    archive = sa.table('raw_deliveries', sa.column('delivery_id', sa.String),
                       sa.column('body', sa.LargeBinary), sa.column('body_sha256', sa.String))
    claims = sa.table('deliveries', sa.column('delivery_id', sa.String),
                      sa.column('body_sha256', sa.String))
    digests = [{'key': row.delivery_id, 'digest': hashlib.sha256(row.body).hexdigest()}
               for row in bind.execute(sa.select(archive.c.delivery_id, archive.c.body))]
    for table in (archive, claims):
        statement = (sa.update(table).where(table.c.delivery_id == sa.bindparam('key'))
                     .values(body_sha256=sa.bindparam('digest')))
        for start in range(0, len(digests), CHUNK):
            bind.execute(statement, digests[start:start + CHUNK])
    # A claim without its archived body (none are expected) gets the digest of no body.
    bind.execute(sa.update(claims).where(claims.c.body_sha256.is_(None))
                 .values(body_sha256=hashlib.sha256(b'').hexdigest()))


def downgrade() -> None:
    """Not supported: the previous schema has room for neither a second body under a
    delivery id nor one delivery id in two shops. Restore the backup taken before upgrading."""
    raise NotImplementedError("0002 cannot be downgraded; restore a backup instead")
