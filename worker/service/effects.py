"""The effects of provider events, written once for every provider: a provider's topic table says
what an event means (`connectors.provider.Change`); this applies it to the account, in the
caller's transaction. `plan` decides on plain data; `apply_change` writes what it decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.base import ErrorCode
from connectors.provider import Change
from models import Account, AccountError, AccountStatus
from worker.service.checks.transitions import status_for
from worker.service.records import open_error, resolve_errors, set_status

SOURCE = "event"


@dataclass(frozen=True)
class Plan:
    """What an event will do to an account in a given status."""

    merge: bool  # merge the change's metadata (and say whether anything changed)
    disconnect: bool
    open_error: bool
    resolve: bool
    note: str | None  # a record-only event: only this is said


def plan(change: Change, status: str) -> Plan:
    """The steps `change` takes for an account now in `status`: a disconnection is all an
    uninstall does; a problem is not opened on an account already disconnected (its connection
    is gone, which says more); a record-only change only notes."""
    if change.disconnect is not None:
        return Plan(merge=False, disconnect=True, open_error=False, resolve=False, note=None)
    acts = bool(change.metadata) or change.error is not None or bool(change.resolve)
    if change.note is not None and not acts:
        return Plan(False, False, False, False, change.note)
    return Plan(
        merge=True,
        disconnect=False,
        open_error=change.error is not None and status != AccountStatus.DISCONNECTED,
        resolve=change.error is None and bool(change.resolve),
        note=None,
    )


def apply_change(session: Session, account: Account, change: Change) -> str:
    """Apply `change` to `account`; returns what it did, in words for the operator."""
    steps = plan(change, account.status)
    if steps.note is not None:
        return steps.note
    if steps.disconnect:
        assert change.disconnect is not None
        text = change.disconnect
        open_error(session, account, ErrorCode.CONNECTION_REVOKED, text, SOURCE)
        changed = set_status(session, account, AccountStatus.DISCONNECTED, text, SOURCE)
        return "status disconnected" if changed else "already disconnected"
    merged = merge_metadata(account, dict(change.metadata))
    said = [f"{change.subject} {'updated' if merged else 'unchanged'}"]
    if steps.open_error:
        assert change.error is not None
        code, message = change.error
        open_error(session, account, code, message, SOURCE)
        if set_status(session, account, status_for(code), message, SOURCE):
            said.append(f"status {status_for(code).value}")
    if steps.resolve:
        codes = {c.value for c in change.resolve}
        resolved = resolve_errors(session, account, codes)
        if (
            resolved
            and account.status == AccountStatus.ERROR
            and not has_open_errors(session, account)
        ):
            reason = change.resolved_reason or "the provider says the problem is gone"
            set_status(session, account, AccountStatus.CONNECTED, reason, SOURCE)
            said.append("status connected")
    return ", ".join(said)


def merge_metadata(account: Account, values: dict[str, Any]) -> bool:
    """Merge `values` into the account's metadata; False when nothing changed."""
    merged = {**account.meta, **values}
    if merged == account.meta:
        return False
    account.meta = merged
    return True


def has_open_errors(session: Session, account: Account) -> bool:
    query = select(AccountError.id).where(
        AccountError.account_id == account.id, AccountError.resolved_at.is_(None)
    )
    return session.execute(query.limit(1)).first() is not None
