"""Health checks: get usable credentials (refreshing at most once at a time per account), ask the
provider, and record the outcome as status, errors and events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors import CheckResult, Connector, ErrorCode, ProviderError
from models import Account, AccountStatus, utc_now
from worker.logconfig import secrets_known
from worker.service.deps import Deps
from worker.service.outcomes import Outcome, Reason, Rejected
from worker.service.records import open_error, resolve_errors, set_status, status_for
from worker.service.views import summary

log = structlog.get_logger(__name__)

CheckOutcome = CheckResult | ProviderError
# Errors a passing check does not disprove: they come from events, not from the provider's API.
NOT_RESOLVED_BY_CHECK = {ErrorCode.EVENT_UNPROCESSABLE.value}


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
    deps: Deps, account: Checkable, connector: Connector, *, ahead: timedelta = timedelta(0)
) -> tuple[dict[str, Any], int]:
    """Refresh the account's credentials, once at a time per account across every process.

    The refresh runs holding the account's row lock (the blocking lock wait in a thread) and
    re-reads the credentials under it, so a second caller finds them fresh and does nothing;
    the rotated tokens are committed before anyone uses them. `ahead` renews tokens that
    expire within that time. Returns the credentials and their version.
    """
    with deps.db.unit_of_work() as session:
        locked = await asyncio.to_thread(
            lambda: session.scalars(
                select(Account).where(Account.id == account.id).with_for_update()
            ).first()
        )
        if locked is None:  # removed meanwhile; the batch will not record it
            return deps.vault.decrypt(account.credentials), account.credentials_version
        credentials = deps.vault.decrypt(locked.credentials)
        if not connector.needs_refresh(credentials, utc_now() + ahead):
            return credentials, locked.credentials_version  # another worker refreshed first
        with secrets_known(list(map(str, credentials.values()))):
            refreshed = await connector.refresh(credentials, locked.connection)
        locked.credentials = deps.vault.encrypt(refreshed.credentials)
        locked.credentials_version += 1
        locked.credentials_expire_at = refreshed.expires_at
        if refreshed.connection:  # a refresh may change what was granted (Shopify scopes)
            locked.connection = {**locked.connection, **refreshed.connection}
        version = locked.credentials_version
        log.info("credentials_refreshed", account_id=str(account.id), org_id=account.org_id)
    return refreshed.credentials, version


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
    """
    connector = deps.connectors.get(account.type)
    version = account.credentials_version
    try:
        if credentials is None:
            credentials = deps.vault.decrypt(account.credentials)
        if connector.needs_refresh(credentials, utc_now() + refresh_ahead):
            async with refresh_gate or contextlib.nullcontext():
                credentials, version = await refresh_credentials(
                    deps, account, connector, ahead=refresh_ahead
                )
        with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
            result: CheckOutcome = await connector.check(credentials, account.connection)
    except ProviderError as exc:
        result = exc
    return Probe(account.id, result, version)


def apply_outcome(
    session: Session,
    account: Account,
    outcome: CheckOutcome,
    source: str,
    *,
    open_codes: Collection[str] | None = None,
) -> None:
    """Record what a check found: status only on change, one open error per problem.

    `open_codes`, when the caller already read the account's open errors (a batch does, in one
    query), spares the queries for them: on a passing check, and on a failure that is new.
    """
    account.last_checked_at = utc_now()
    if isinstance(outcome, CheckResult):
        account.consecutive_failures = 0
        if outcome.metadata:
            account.meta = {**account.meta, **outcome.metadata}
        resolvable = {c.value for c in ErrorCode} - NOT_RESOLVED_BY_CHECK
        if open_codes is None or resolvable.intersection(open_codes):
            resolve_errors(session, account, resolvable)
        set_status(session, account, AccountStatus.CONNECTED, "check passed", source)
        return
    account.consecutive_failures += 1
    open_error(session, account, outcome.code, outcome.message, source, open_codes=open_codes)
    set_status(session, account, status_for(outcome.code), outcome.message, source)


def check_now(session: Session, deps: Deps, account_id: uuid.UUID) -> Outcome:
    """The `accounts.check` job: check one account outside the schedule."""
    with deps.db.unit_of_work() as read:
        account = read.get(Account, account_id)
        if account is None:
            raise Rejected(Reason.NOT_FOUND, "no such account")
        read.expunge(account)
    if account.status == AccountStatus.DISCONNECTED:
        return Outcome(
            "not checked: the account is disconnected; connect it again with new credentials",
            summary(account),
            {"checked": False},
        )
    found = probe(deps, account)
    current = session.scalars(
        select(Account).where(Account.id == account_id).with_for_update()
    ).first()
    if current is None:
        raise Rejected(Reason.NOT_FOUND, "the account was removed during the check")
    apply_outcome(session, current, found.outcome, "check")
    session.flush()
    passed = isinstance(found.outcome, CheckResult)
    extra: dict[str, Any] = {"checked": True, "passed": passed}
    if not passed:
        assert isinstance(found.outcome, ProviderError)
        extra["error_code"] = found.outcome.code.value
    message = "check passed" if passed else f"check failed: {found.outcome}"
    return Outcome(message, summary(current), extra)
