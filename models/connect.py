"""Connect sessions: one browser's trip to a provider's authorize page and back, from the front
end's request to the account it added or reconnected. A session is used at most once."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.clock import utc_now


class ConnectStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    EXPIRED = "expired"  # read as such once past `expires_at` unused; never stored


class ConnectSession(Base):
    __tablename__ = "connect_sessions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    org_id: Mapped[str] = mapped_column(String(100), index=True)
    # {user_id, role} of the person who started it; the job runs as them.
    actor: Mapped[dict[str, Any]]
    type: Mapped[str] = mapped_column(String(20))
    name: Mapped[str | None] = mapped_column(String(200))
    # Set for a reconnect: the account whose credentials the session replaces.
    account_id: Mapped[uuid.UUID | None]
    shop_domain: Mapped[str | None] = mapped_column(String(255))
    return_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=ConnectStatus.PENDING)
    reason: Mapped[str | None] = mapped_column(String(50))
    message: Mapped[str | None] = mapped_column(Text)
    # The add or update job the callback queued (its request_id is the session id).
    job_id: Mapped[str | None] = mapped_column(String(155))
    account: Mapped[dict[str, Any] | None]  # the account summary the job answered with
    expires_at: Mapped[datetime]
    # Stamped once, by the one callback that may go on (UPDATE ... WHERE used_at IS NULL).
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
