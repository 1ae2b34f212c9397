"""The worker's data: typed SQLAlchemy 2 models, sessions and Alembic migrations.

Imports nothing from `worker` or `connectors`: data flows down to here, never back up.
"""

from models.account import (
    Account,
    AccountError,
    AccountStatus,
    IntegrationRef,
    StatusChange,
)
from models.audit import AuditCause, AuditEntry
from models.base import Base
from models.clock import utc_now
from models.connect import ConnectSession, ConnectStatus
from models.events import AccountEventMark, InboundEvent, InboundStatus, OutboxEvent
from models.job import Job
from models.provider import ProviderIncident, StreamOffset
from models.session import Database, after_commit

__all__ = [
    "Account",
    "AccountError",
    "AccountEventMark",
    "AccountStatus",
    "AuditCause",
    "AuditEntry",
    "Base",
    "ConnectSession",
    "ConnectStatus",
    "Database",
    "InboundEvent",
    "InboundStatus",
    "IntegrationRef",
    "Job",
    "OutboxEvent",
    "ProviderIncident",
    "StatusChange",
    "StreamOffset",
    "after_commit",
    "utc_now",
]
