"""Provider connectors behind one interface; no Celery, no database."""

from connectors.base import (
    Authorized,
    CheckResult,
    Connector,
    ErrorCode,
    PermanentFailure,
    ProviderError,
    TemporaryFailure,
)
from connectors.registry import Connectors, ConnectorSettings

__all__ = [
    "Authorized",
    "CheckResult",
    "Connector",
    "ConnectorSettings",
    "Connectors",
    "ErrorCode",
    "PermanentFailure",
    "ProviderError",
    "TemporaryFailure",
]
