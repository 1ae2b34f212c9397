"""The inbox of provider events and the outbox of events we publish."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.clock import utc_now


class InboundStatus(enum.StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    UNROUTABLE = "unroutable"
    FAILED = "failed"


class InboundEvent(Base):
    """A provider event stored before we answer 200; the unique key makes redelivery free."""

    __tablename__ = "inbound_events"
    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_inbound_events_provider_id"),
        Index(
            "ix_inbound_events_pending",
            "received_at",
            postgresql_where=text("status = 'received'"),
            sqlite_where=text("status = 'received'"),
        ),
        # What an operator lists and replays: unroutable and failed events.
        Index(
            "ix_inbound_events_attention",
            "status",
            "received_at",
            postgresql_where=text("status IN ('unroutable', 'failed')"),
            sqlite_where=text("status IN ('unroutable', 'failed')"),
        ),
        # Retention walks these oldest first (migration 0004): processed events by when they were
        # processed, unroutable and failed ones by their last attempt.
        Index(
            "ix_inbound_events_processed",
            "processed_at",
            postgresql_where=text("status = 'processed'"),
            sqlite_where=text("status = 'processed'"),
        ),
        Index(
            "ix_inbound_events_attention_attempt",
            "last_attempt_at",
            postgresql_where=text("status IN ('unroutable', 'failed')"),
            sqlite_where=text("status IN ('unroutable', 'failed')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(20))
    provider_event_id: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    route_key: Mapped[str | None] = mapped_column(String(255))
    account_id: Mapped[uuid.UUID | None]
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), default=InboundStatus.RECEIVED)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(default=utc_now)
    processed_at: Mapped[datetime | None]
    # What processing did, in words ("status disconnected", "older than the last applied event").
    effect: Mapped[str | None] = mapped_column(Text)
    # After a failed attempt: when the retry is due; the sweeper leaves the row alone until then.
    next_attempt_at: Mapped[datetime | None]
    # When a delivery was last counted as an attempt: unroutable and failed events are kept for
    # INBOX_RETENTION after it.
    last_attempt_at: Mapped[datetime | None]


class AccountEventMark(Base):
    """The provider time of the newest event applied to an account: an older event arriving
    later is recorded but never overrides what the newer one set."""

    __tablename__ = "account_event_marks"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    last_event_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


class OutboxEvent(Base):
    """An event written in the same transaction as the change it describes; the relay publishes
    rows in `seq` order, which keeps each account's events in order."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index(
            "ix_outbox_events_unpublished",
            "seq",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # Retention deletes published events oldest first (migration 0004).
        Index(
            "ix_outbox_events_published",
            "published_at",
            postgresql_where=text("published_at IS NOT NULL"),
            sqlite_where=text("published_at IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(
        # SQLite autoincrements only an INTEGER primary key.
        BigInteger().with_variant(Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    )
    id: Mapped[uuid.UUID] = mapped_column(unique=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(50))
    org_id: Mapped[str] = mapped_column(String(100))
    account_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now)
    data: Mapped[dict[str, Any]]
    published_at: Mapped[datetime | None]
