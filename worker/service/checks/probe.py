"""Asking a provider about one account: usable credentials first (refreshed at most once at a
time per account), then the health call; a rejected access token is refreshed once and the call
tried again before the rejection is believed. Nothing is recorded here (see `record`), but for
a refresh the provider refuses: its error is written under the account's lock, so the checks
waiting behind it answer with it instead of asking the provider again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import CheckResult, Connector, ErrorCode, PermanentFailure, ProviderError
from models import Account, AccountError, AuditCause, utc_now
from worker import metrics
from worker.logconfig import secrets_known
from worker.service import audit, notify
from worker.service.checks.verdicts import CheckOutcome
from worker.service.deps import Deps
from worker.service.records import open_error
from worker.vault import VaultError

log = structlog.get_logger(__name__)

# What a provider says of an access token it will not take; with a refresh token stored, the
# token is refreshed once before the account is blamed.
REJECTED = frozenset({ErrorCode.CREDENTIALS_INVALID, ErrorCode.CREDENTIALS_EXPIRED})
# What only a refused refresh says (a dead refresh token, an uninstalled app): written when the
# refresh fails, the answer for the checks that were under way meanwhile.
REFUSED = frozenset({ErrorCode.REFRESH_FAILED, ErrorCode.CONNECTION_REVOKED})
UNREADABLE = (
    "the stored credentials cannot be decrypted with the configured encryption keys (the key "
    "that wrote them was removed too early): put that key back in CONNECTIONS_ENCRYPTION_KEYS, "
    "then run `connections accounts rotate-keys`"
)


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """What checking an account needs of it, read as plain columns: a batch reads hundreds of
    accounts and needs neither the ORM's tracking nor the JSON columns it does not use."""

    id: uuid.UUID
    type: str
    org_id: str
    connection: dict[str, Any]
    credentials: bytes
    credentials_version: int


# A loaded account, or the columns of one a batch read.
Checkable = Account | CheckTarget


@dataclass(frozen=True)
class Probe:
    account_id: uuid.UUID
    outcome: CheckOutcome
    # The credentials the check used; a newer version at recording time makes the outcome stale.
    credentials_version: int | None = None
    # The outcome's error is written already (a refused refresh): recorded without counting it.
    noted: bool = False


class RefreshRefused(Exception):
    """The provider refused the refresh, and its error is written on the account (`REFUSED`)."""

    def __init__(self, failure: ProviderError) -> None:
        super().__init__(failure.message)
        self.failure = failure


def unreadable(account: Checkable) -> Probe:
    """The probe of an account whose credentials the vault cannot decrypt: an operator's error,
    recorded like any other that needs a person, not a crash retried every tick."""
    failure = PermanentFailure(ErrorCode.CREDENTIALS_UNREADABLE, UNREADABLE)
    return Probe(account.id, failure, account.credentials_version)


def retry_refreshed(failure: ProviderError, can_refresh: bool) -> bool:
    """Whether a failed check is tried again after a refresh: the provider refused the access
    token and a refresh token is stored. (A check that has just refreshed is not: once.)"""
    return failure.code in REJECTED and can_refresh


def refresh_now(stored_version: int, *, rejected: int | None, expiring: bool) -> bool:
    """Under the account's lock: whether to refresh. Planned (`rejected` None): while the stored
    token expires soon. After a refusal of version `rejected`: unless the stored version is
    another, as it is when a concurrent check refreshed first."""
    return expiring if rejected is None else stored_version == rejected


def refused_since(refused_at: datetime | None, began: datetime | None) -> bool:
    """Under the account's lock, with a refresh of the same credentials due: whether a refusal
    written at `refused_at` answers a check that began at `began`. One written after the check
    began does (it met the same refusal and waited behind that refresh, so it asks nothing
    more); an older one does not, so a later check tries the refresh again."""
    return refused_at is not None and began is not None and refused_at > began


def usable_credentials(deps: Deps, account: Account, connector: Connector) -> dict[str, Any]:
    """The account's credentials, refreshed first when they expire soon (see
    `refresh_credentials`), for synchronous callers."""
    credentials = deps.vault.decrypt(account.credentials)
    if not connector.needs_refresh(credentials, utc_now()):
        return credentials
    fresh, _ = deps.connectors.run(refresh_credentials(deps, account, connector))
    return fresh


def probe(deps: Deps, account: Account) -> Probe:
    """Ask the provider about one account, for synchronous callers (a job)."""
    return deps.connectors.run(probe_async(deps, account))


async def refresh_credentials(
    deps: Deps,
    account: Checkable,
    connector: Connector,
    *,
    ahead: timedelta = timedelta(0),
    rejected: int | None = None,
    began: datetime | None = None,
) -> tuple[dict[str, Any], int]:
    """Refresh the account's credentials, once at a time per account across every process.

    The refresh runs holding the account's row lock (the blocking lock wait in a thread) and
    re-reads the credentials under it, so a second caller finds them fresh and does nothing;
    the rotated tokens are committed before anyone uses them. `ahead` renews tokens that
    expire within that time. `rejected` is the credentials version whose access token the
    provider refused: refreshed whatever its expiry says, unless the stored version is newer
    (another check refreshed since), so checks that met the same refusal refresh once.
    `began`, for a check (which records the rest): when it began. A refusal written since
    (`refused_since`) is raised without asking the provider; a new one is written, and
    committed, as the account's error before `RefreshRefused` is raised, so the checks waiting
    for the lock find it. Returns the credentials and their version.
    """
    refused: ProviderError | None = None
    with deps.db.unit_of_work() as session:
        locked = await asyncio.to_thread(
            lambda: session.scalars(
                select(Account).where(Account.id == account.id).with_for_update()
            ).first()
        )
        if locked is None:  # removed meanwhile; the batch will not record it
            return deps.vault.decrypt(account.credentials), account.credentials_version
        credentials = deps.vault.decrypt(locked.credentials)
        expiring = rejected is None and connector.needs_refresh(credentials, utc_now() + ahead)
        if not refresh_now(locked.credentials_version, rejected=rejected, expiring=expiring):
            return credentials, locked.credentials_version  # another worker refreshed first
        earlier = _last_refusal(session, locked.id) if began is not None else None
        if earlier is not None and refused_since(earlier.last_occurred_at, began):
            raise PermanentFailure(ErrorCode(earlier.code), earlier.message)
        counted = metrics.refreshing(locked.type)
        try:
            with secrets_known(list(map(str, credentials.values()))), counted:
                refreshed = await connector.refresh(credentials, locked.connection)
        except PermanentFailure as exc:
            if began is None or exc.code not in REFUSED:
                raise
            open_error(session, locked, exc.code, exc.message, "check")
            refused = exc
        else:
            locked.credentials = deps.vault.encrypt(refreshed.credentials)
            locked.credentials_version += 1
            locked.credentials_expire_at = refreshed.expires_at
            if refreshed.connection:  # a refresh may change what was granted (Shopify scopes)
                locked.connection = {**locked.connection, **refreshed.connection}
            notify.credentials_changed(session, locked.type, locked.id)
            why = {"why": "expiring" if rejected is None else "rejected"}
            audit.record(
                session,
                "credentials.refreshed",
                org_id=locked.org_id,
                account_id=locked.id,
                actor=None,
                cause=AuditCause.REFRESH,
                details=why,
            )
            log.info(
                "credentials_refreshed",
                account_id=str(account.id),
                org_id=account.org_id,
                cause="expiring" if rejected is None else "rejected",
            )
        version = locked.credentials_version
    if refused is not None:
        raise RefreshRefused(refused)
    return refreshed.credentials, version


def _last_refusal(session: Session, account_id: uuid.UUID) -> AccountError | None:
    """The account's open refusal error, latest first (the open errors' unique index)."""
    return session.scalars(
        select(AccountError)
        .where(
            AccountError.account_id == account_id,
            AccountError.code.in_([c.value for c in REFUSED]),
            AccountError.resolved_at.is_(None),
        )
        .order_by(AccountError.last_occurred_at.desc())
        .limit(1)
    ).first()


@metrics.timed_check
async def probe_async(
    deps: Deps,
    account: Checkable,
    *,
    refresh_ahead: timedelta = timedelta(0),
    refresh_gate: asyncio.Semaphore | None = None,
    credentials: dict[str, Any] | None = None,
) -> Probe:
    """Ask the provider about one account; no transaction is held during the call, so one
    loop probes many accounts at once.

    `refresh_gate` bounds the refreshes in flight: each holds a row lock and a connection.
    `credentials` are the account's decrypted credentials when the caller has them already.
    A refresh that fails (`refresh_failed`, or `connection_revoked` for an uninstalled app) is
    the outcome (`noted` when the refresh wrote its error); so is a second refusal after a
    refresh.
    """
    connector = deps.connectors.get(account.type)
    version = account.credentials_version
    gate = refresh_gate or contextlib.nullcontext()
    began, noted = utc_now(), False
    try:
        if credentials is None:
            credentials = deps.vault.decrypt(account.credentials)
        refreshed = connector.needs_refresh(credentials, utc_now() + refresh_ahead)
        if refreshed:
            async with gate:
                credentials, version = await refresh_credentials(
                    deps, account, connector, ahead=refresh_ahead, began=began
                )
        try:
            result: CheckOutcome = await _check(connector, credentials, account.connection)
        except ProviderError as exc:
            if refreshed or not retry_refreshed(exc, connector.can_refresh(credentials)):
                raise
            async with gate:
                credentials, version = await refresh_credentials(
                    deps, account, connector, rejected=version, began=began
                )
            result = await _check(connector, credentials, account.connection)
    except RefreshRefused as exc:
        result, noted = exc.failure, True
    except ProviderError as exc:
        result = exc
    except VaultError:
        return unreadable(account)
    return Probe(account.id, result, version, noted)


async def _check(
    connector: Connector, credentials: dict[str, Any], connection: dict[str, Any]
) -> CheckResult:
    with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
        return await connector.check(credentials, connection)
