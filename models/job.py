"""Jobs other services queued, with the result each returned; `request_id` makes them idempotent."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.clock import utc_now


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("name", "request_id", name="uq_jobs_name_request_id"),
        # Retention deletes finished jobs oldest first (migration 0004).
        Index(
            "ix_jobs_finished",
            "finished_at",
            postgresql_where=text("finished_at IS NOT NULL"),
            sqlite_where=text("finished_at IS NOT NULL"),
        ),
    )

    # The Celery task id: the caller knows it from `send_task` and reads the result by it.
    id: Mapped[str] = mapped_column(String(155), primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    request_id: Mapped[str | None] = mapped_column(String(200))
    org_id: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(20), default="running")
    result: Mapped[dict[str, Any] | None]
    # A repeat of an earlier request_id points at the job whose result it answers with.
    duplicate_of: Mapped[str | None] = mapped_column(String(155))
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    finished_at: Mapped[datetime | None]
