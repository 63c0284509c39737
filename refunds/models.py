"""The tables: refunds, every message and its effect, each delivery's event on its refund's
timeline, risk flags, raw deliveries, dead letters, tokens.

A delivery is identified by (shop, delivery id) everywhere: two shops may send the same id or
the same bytes, and each is a delivery of its own."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from refunds.types import Money, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - read by SQLAlchemy, never mutated
        Decimal: Money(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        bytes: LargeBinary(),
    }


class Refund(Base):
    """The current state of one refund, derived from its recorded messages."""

    __tablename__ = "refunds"
    __table_args__ = (
        # lookups without a shop, in the (shop, refund id) order the API pages by
        Index("ix_refunds_refund_id", "refund_id", "shop"),
        Index("ix_refunds_order_id", "order_id", "shop", "refund_id"),
        Index("ix_refunds_updated_at", "updated_at"),
        # search (issue 12, migration 0005): equality filters stream in page order; a narrow
        # range is read through its index and sorted, a wide one walks the primary key
        Index("ix_refunds_customer_id", "customer_id", "shop", "refund_id"),
        Index("ix_refunds_status", "status", "shop", "refund_id"),
        Index("ix_refunds_currency", "currency", "shop", "refund_id"),
        Index("ix_refunds_created_at", "created_at"),
        Index("ix_refunds_refunded_at", "refunded_at"),
        Index("ix_refunds_refund_price", "refund_price"),
    )

    shop: Mapped[str] = mapped_column(String(255), primary_key=True)
    refund_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    refund_price: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    line_items: Mapped[list[Any] | None]
    fund_changes: Mapped[list[Any]]
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]  # the first `refunded` message's time
    rights_reason_type: Mapped[str | None] = mapped_column(String(64))
    rights_reason: Mapped[str | None] = mapped_column(Text)
    events_applied: Mapped[int]
    last_applied_at: Mapped[datetime | None]


class MessageRecord(Base):
    """One distinct message about a refund; the same content under a new delivery id is
    rejected by the unique fingerprint."""

    __tablename__ = "refund_messages"
    __table_args__ = (
        UniqueConstraint("shop", "refund_id", "fingerprint", name="uq_refund_messages_content"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(String(255))
    refund_id: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    # schemas.fingerprint's version; 1 for a migrated row whose version-2 fingerprint
    # matched an earlier message of its refund (kept distinct, as it was recorded)
    fingerprint_version: Mapped[int]
    delivery_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    created_at: Mapped[datetime | None]
    price: Mapped[Decimal | None]
    order_id: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    line_items: Mapped[list[Any] | None]
    message: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]

    # The after-sale reason the fold carries to the refund, read from the stored message.
    @property
    def rights_reason_type(self) -> str | None:
        return _after_sale(self.message, "rights_reason_type")

    @property
    def rights_reason(self) -> str | None:
        return _after_sale(self.message, "rights_reason")


def _after_sale(message: dict[str, Any], name: str) -> str | None:
    value = (message.get("after_sale") or {}).get(name)
    return None if value is None else str(value)


class RefundEvent(Base):
    """One delivery that reached a refund, and what it did there: the refund's timeline.
    Written in the transaction that decided the effect, so the timeline never disagrees with
    the claims."""

    __tablename__ = "refund_events"
    __table_args__ = (
        Index("ix_refund_events_refund", "shop", "refund_id", "occurred_at"),
        Index("ix_refund_events_recorded_at", "recorded_at"),  # the pipeline's last hour
    )

    id: Mapped[int] = mapped_column(primary_key=True)  # arrival order
    shop: Mapped[str] = mapped_column(String(255))
    refund_id: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime]
    # what the delivery said, when it could be read (a conflicting body may not parse)
    occurred_at: Mapped[datetime | None]
    kind: Mapped[str | None] = mapped_column(String(16))
    price: Mapped[Decimal | None]
    effect: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("refund_messages.id"))
    recorded_at: Mapped[datetime]


class RefundFlag(Base):
    """A risk rule raised on a refund: once per rule and refund, open until acknowledged."""

    __tablename__ = "refund_flags"
    __table_args__ = (
        UniqueConstraint("shop", "refund_id", "rule", name="uq_refund_flags_refund_rule"),
        # the refunds with an open flag, in page order (search's `flagged`)
        Index("ix_refund_flags_open", "shop", "refund_id",
              postgresql_where=text("acknowledged_at IS NULL"),
              sqlite_where=text("acknowledged_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(String(255))
    refund_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    details: Mapped[dict[str, Any]]
    raised_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(255))


class DeliveryClaim(Base):
    """The dedupe record: a (shop, delivery id) here has had its one effect, with the body
    that had it (another body under the same id is a conflict, not a duplicate)."""

    __tablename__ = "deliveries"

    shop: Mapped[str] = mapped_column(String(255), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(255))
    refund_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    # the message this delivery recorded, or the one it duplicated
    message_id: Mapped[int | None] = mapped_column(ForeignKey("refund_messages.id"))
    processed_at: Mapped[datetime]


class RawDeliveryRecord(Base):
    """Every accepted delivery as received, so state can be rebuilt and audited: each body
    a (shop, delivery id) came with, conflicting ones included."""

    __tablename__ = "raw_deliveries"

    shop: Mapped[str] = mapped_column(String(255), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str | None] = mapped_column(String(255))
    headers: Mapped[dict[str, Any]]
    body: Mapped[bytes]
    received_at: Mapped[datetime]
    archived_at: Mapped[datetime]


class DeadLetter(Base):
    """A delivery that could not be applied, kept with its body until a requeue resolves it:
    one row per (shop, delivery id)."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        Index("ix_dead_letters_reason_state", "reason", "state"),
        UniqueConstraint("shop", "delivery_id", name="uq_dead_letters_shop_delivery_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(String(255))
    delivery_id: Mapped[str] = mapped_column(String(255))
    body_sha256: Mapped[str] = mapped_column(String(64))  # of the body kept here
    topic: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(32))
    error: Mapped[str] = mapped_column(Text)
    errors: Mapped[list[Any]]
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int]
    headers: Mapped[dict[str, Any]]
    body: Mapped[bytes]
    received_at: Mapped[datetime]
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class Shop(Base):
    """A Genstore shop the sink acts for: its Admin API access token, encrypted at rest
    (`REFUND_SINK_SECRET_KEY`), never shown. Once any shop is registered, deliveries naming
    another shop are not applied."""

    __tablename__ = "shops"

    domain: Mapped[str] = mapped_column(String(255), primary_key=True)
    access_token_encrypted: Mapped[bytes]
    # Its clock and money (Genstore's `shops/info`): naive times of its messages are read in
    # `iana_timezone`, and a refund without a currency takes `currency`.
    iana_timezone: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str | None] = mapped_column(String(16))
    added_at: Mapped[datetime]
    last_reconciled_at: Mapped[datetime | None]
    last_reconcile_outcome: Mapped[str | None] = mapped_column(String(32))


class Erasure(Base):
    """That a compliance request erased data, and when, from which delivery: never what was
    erased."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    shop: Mapped[str] = mapped_column(String(255))
    customer_id: Mapped[str | None] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(255))
    rows: Mapped[dict[str, Any]]  # rows touched per table, for the operator
    erased_at: Mapped[datetime]


class ReconcileRun(Base):
    """One reconcile of one shop (refund_sink.reconcile_commands): when, how it ended
    (genstore_api.reconcile.Outcome) and what it found. The reconcile metrics and the last
    run shown by /readyz and the console are read from these rows, so every process agrees."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    shop: Mapped[str] = mapped_column(String(255), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(32))
    missing: Mapped[int]
    differs: Mapped[int]
    only_local: Mapped[int]
    applied: Mapped[int]
    error: Mapped[str | None] = mapped_column(String(500))  # one line, never a token


class ApiToken(Base):
    """API tokens; only the SHA-256 of the token is stored. A token with a shop sees that
    shop only; one with an expiry stops working then."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(255))
    shop: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
