"""Health checks: get usable credentials (refreshing at most once at a time per account), ask the
provider, and record the outcome as status, errors and events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Probe:
    account_id: uuid.UUID
    outcome: CheckOutcome


def usable_credentials(deps: Deps, account: Account, connector: Connector) -> dict[str, Any]:
    """The account's credentials, refreshed first when they expire soon.

    The refresh runs holding the account's row lock, so across every worker process one refresh
    happens at a time; the new tokens are committed before anyone uses them.
    """
    credentials = deps.vault.decrypt(account.credentials)
    if not connector.needs_refresh(credentials, utc_now()):
        return credentials
    with deps.db.unit_of_work() as session:
        locked = session.scalars(
            select(Account).where(Account.id == account.id).with_for_update()
        ).one()
        credentials = deps.vault.decrypt(locked.credentials)
        if not connector.needs_refresh(credentials, utc_now()):
            return credentials  # another worker refreshed while we waited for the lock
        with secrets_known(list(map(str, credentials.values()))):
            refreshed = deps.connectors.run(connector.refresh(credentials, locked.connection))
        locked.credentials = deps.vault.encrypt(refreshed.credentials)
        locked.credentials_version += 1
        locked.credentials_expire_at = refreshed.expires_at
        log.info("credentials_refreshed", account_id=str(account.id), org_id=account.org_id)
    return refreshed.credentials


def probe(deps: Deps, account: Account) -> Probe:
    """Ask the provider about one account; no transaction is held during the call."""
    connector = deps.connectors.get(account.type)
    try:
        credentials = usable_credentials(deps, account, connector)
        with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
            result: CheckOutcome = deps.connectors.run(
                connector.check(credentials, account.connection)
            )
    except ProviderError as exc:
        result = exc
    return Probe(account.id, result)


def apply_outcome(session: Session, account: Account, outcome: CheckOutcome, source: str) -> None:
    """Record what a check found: status only on change, one open error per problem."""
    account.last_checked_at = utc_now()
    if isinstance(outcome, CheckResult):
        account.consecutive_failures = 0
        if outcome.metadata:
            account.meta = {**account.meta, **outcome.metadata}
        open_codes = {c.value for c in ErrorCode} - NOT_RESOLVED_BY_CHECK
        resolve_errors(session, account, open_codes)
        set_status(session, account, AccountStatus.CONNECTED, "check passed", source)
        return
    account.consecutive_failures += 1
    open_error(session, account, outcome.code, outcome.message, source)
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
