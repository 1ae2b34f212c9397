"""Connected accounts, the integrations that reference them, their errors and status history."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, postgresql_expression_index
from models.clock import utc_now


class AccountStatus(enum.StrEnum):
    PENDING = "pending"
    CONNECTED = "connected"
    DEGRADED = "degraded"
    ERROR = "error"
    DISCONNECTED = "disconnected"


# Provider events find their account by these keys of the JSON columns (each provider's `routes`
# in the registry); migrations 0002 and 0003 create them. The embedded SQLite database is small
# enough to scan.
ROUTING_INDEXES = {
    "ix_accounts_shop_domain": "(connection ->> 'shop_domain')",
    "ix_accounts_stripe_account": "(connection ->> 'stripe_account_id')",
    "ix_accounts_meta_stripe_account": "(metadata ->> 'stripe_account_id')",
    "ix_accounts_fortnox_tenant": "(metadata ->> 'fortnox_tenant_id')",
    "ix_accounts_hubspot_portal": "(connection ->> 'portal_id')",
}


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        Index("ix_accounts_due", "next_check_at"),
        *(postgresql_expression_index(n, e) for n, e in ROUTING_INDEXES.items()),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(200))
    # A provider's type as the registry names it (`connectors.registry.PROVIDERS`).
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=AccountStatus.PENDING)
    connection: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Fernet token of the JSON credentials; never decrypted outside a unit of work that needs it.
    credentials: Mapped[bytes] = mapped_column(LargeBinary)
    # Bumped on every credential write, so a refresh can tell it raced another one.
    credentials_version: Mapped[int] = mapped_column(default=1)
    credentials_expire_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
    last_checked_at: Mapped[datetime | None]
    next_check_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(default=0)

    integrations: Mapped[list[IntegrationRef]] = relationship(
        back_populates="account", passive_deletes="all", order_by="IntegrationRef.created_at"
    )


class IntegrationRef(Base):
    """An integration (workflow) using an account. RESTRICT makes the database refuse to delete
    a referenced account, so no interleaving of remove and link jobs can lose a reference."""

    __tablename__ = "integration_refs"

    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="RESTRICT"), primary_key=True
    )
    integration_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)

    account: Mapped[Account] = relationship(back_populates="integrations")


class AccountError(Base):
    """One problem of one account; repeats update it, the next pass resolves it."""

    __tablename__ = "account_errors"
    __table_args__ = (
        # At most one open error per problem: a repeat must update, never add.
        Index(
            "uq_account_errors_open",
            "account_id",
            "code",
            unique=True,
            postgresql_where=text("resolved_at IS NULL"),
            sqlite_where=text("resolved_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))
    first_occurred_at: Mapped[datetime]
    last_occurred_at: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(default=1)
    resolved_at: Mapped[datetime | None]


class StatusChange(Base):
    __tablename__ = "status_changes"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(10))
    actor: Mapped[dict[str, Any] | None]
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now)
