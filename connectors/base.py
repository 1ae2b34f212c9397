"""The one interface every provider connector implements, and the failures it may raise.

Connectors know nothing of Celery or the database: they take decrypted credentials and
non-secret connection info, talk HTTP, and answer with plain data or a typed failure.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

# What dates token expiries; tests give the service's frozen clock.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def stored_time(value: Any) -> datetime | None:
    """A time stored in credentials as ISO 8601 (naive means UTC), or None when absent or bad."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ErrorCode(enum.StrEnum):
    CREDENTIALS_INVALID = "credentials_invalid"
    CREDENTIALS_EXPIRED = "credentials_expired"
    REFRESH_FAILED = "refresh_failed"
    PERMISSION_MISSING = "permission_missing"
    LICENCE_MISSING = "licence_missing"
    ACCOUNT_FROZEN = "account_frozen"
    ACCOUNT_LOCKED = "account_locked"
    RATE_LIMITED = "rate_limited"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    TIMEOUT = "timeout"
    CONNECTION_REVOKED = "connection_revoked"
    EVENT_UNPROCESSABLE = "event_unprocessable"
    CREDENTIALS_UNREADABLE = "credentials_unreadable"


TEMPORARY_CODES = frozenset(
    {ErrorCode.RATE_LIMITED, ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.TIMEOUT}
)


class ProviderError(Exception):
    """A provider answered with a failure; `code` is the contract's error code.

    Temporary failures (timeouts, 5xx, 429) may be retried; permanent ones never are.
    """

    def __init__(self, code: ErrorCode, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def temporary(self) -> bool:
        return self.code in TEMPORARY_CODES

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value!r}, {self.message!r})"


class TemporaryFailure(ProviderError):
    """Timeouts, connection errors, 5xx and 429: worth another try later."""


class PermanentFailure(ProviderError):
    """Rejected credentials, missing scope, revoked access: a person must act."""


@dataclass(frozen=True)
class Authorized:
    """What authorization produced: secrets to encrypt, non-secret connection info, expiry."""

    credentials: dict[str, Any]
    connection: dict[str, Any]
    expires_at: datetime | None = None


@dataclass(frozen=True)
class CheckResult:
    """A passed health check: what the provider told us about the account."""

    metadata: dict[str, Any] = field(default_factory=dict)


class Connector(Protocol):
    """One provider. `credentials` are the decrypted secrets; `connection` the non-secret info."""

    type: ClassVar[str]
    credentials_model: ClassVar[builtins.type[BaseModel]]

    async def authorize(self, fields: BaseModel) -> Authorized:
        """Turn validated credential fields into stored credentials (exchange a code)."""
        ...

    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        """One health call; raises ProviderError on failure."""
        ...

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        """True when the access token expires soon and a refresh should happen before use."""
        ...

    def can_refresh(self, credentials: dict[str, Any]) -> bool:
        """True when these credentials hold what a refresh needs (a refresh token): a rejected
        access token is then refreshed once and tried again before it is believed."""
        ...

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        """Exchange the refresh token; raises PermanentFailure(refresh_failed) when it is dead,
        or (connection_revoked) when the provider says the app was uninstalled."""
        ...

    def identity(self, connection: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        """The upstream account these credentials name (shop domain, Stripe account, Fortnox
        organisation number, HubSpot portal), or None when unknown: a reconnect must keep it."""
        ...

    def authorize_url(self, *, state: str, redirect_uri: str, shop_domain: str | None) -> str:
        """Where a browser authorizes the app (OAuth providers); PermanentFailure when the app
        is not configured or the provider connects by key only."""
        ...

    async def revoke(self, credentials: dict[str, Any], connection: dict[str, Any]) -> bool:
        """Revoke the credentials at the provider; False when it offers no way to. Raises
        ProviderError when it failed (a temporary one is worth another try)."""
        ...
