"""Provider-wide state: outages (incidents) and the stream offsets a listener resumes from."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base
from models.clock import utc_now


class ProviderIncident(Base):
    """A provider failing for many accounts at once; recorded once instead of per account."""

    __tablename__ = "provider_incidents"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utc_now)
    ended_at: Mapped[datetime | None]
    failed_checks: Mapped[int] = mapped_column(default=0)


class StreamOffset(Base):
    """The last offset stored per topic of an event stream; written only after its event is."""

    __tablename__ = "stream_offsets"

    stream: Mapped[str] = mapped_column(String(50), primary_key=True)
    topic: Mapped[str] = mapped_column(String(100), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)
