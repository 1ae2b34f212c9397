"""The audit trail: every change to an account and who or what caused it, append-only.

An entry names its account by id only, with no foreign key: the trail outlives the account (the
entry that says it was removed is written as it goes). Nothing prunes these rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType
from models.clock import utc_now


class AuditCause:
    """Why the change happened; the contract's five words."""

    JOB = "job"
    CHECK = "check"
    EVENT = "event"
    REFRESH = "refresh"
    OPERATOR = "operator"


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_org_occurred", "org_id", "occurred_at"),
        Index("ix_audit_entries_account_occurred", "account_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    occurred_at: Mapped[datetime] = mapped_column(default=utc_now)
    # None only for what belongs to no organization (an event replayed that no account claimed).
    org_id: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[uuid.UUID | None]
    action: Mapped[str] = mapped_column(String(50))
    actor: Mapped[dict[str, Any] | None]  # {user_id, role}, or None: the worker itself acted
    cause: Mapped[str] = mapped_column(String(20))
    job_id: Mapped[str | None] = mapped_column(String(155))
    request_id: Mapped[str | None] = mapped_column(String(200))
    # A JSON scalar: "succeeded", "passed", an error code, or true/false/null for a revocation
    # (JSON keeps true, false and null apart from the words).
    outcome: Mapped[Any] = mapped_column(JSONType, nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
