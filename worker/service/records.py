"""The account's record: status changes, errors and outbox events, always written together with
the change they describe, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import ErrorCode
from models import Account, AccountError, AccountStatus, OutboxEvent, StatusChange, utc_now


def emit(
    session: Session, type_: str, org_id: str, account: Account | None, data: dict[str, Any]
) -> OutboxEvent:
    event = OutboxEvent(
        type=type_,
        org_id=org_id,
        account_id=account.id if account is not None else None,
        occurred_at=utc_now(),
        data=data,
    )
    session.add(event)
    return event


def set_status(
    session: Session,
    account: Account,
    to: AccountStatus,
    reason: str,
    source: str,
    actor: dict[str, Any] | None = None,
) -> bool:
    """Record a change of status; the same status again records nothing."""
    if account.status == to:
        return False
    now = utc_now()
    change = StatusChange(
        account_id=account.id,
        from_status=account.status,
        to_status=to,
        reason=reason,
        source=source,
        actor=actor,
        occurred_at=now,
    )
    session.add(change)
    emit(
        session,
        "account.status_changed",
        account.org_id,
        account,
        {
            "from": account.status,
            "to": to.value,
            "reason": reason,
            "source": source,
            "actor": actor,
        },
    )
    account.status = to.value
    return True


def open_error(
    session: Session,
    account: Account,
    code: ErrorCode,
    message: str,
    source: str,
    *,
    open_codes: Collection[str] | None = None,
) -> AccountError:
    """Open an error, or count another occurrence of the one already open for this problem.

    `open_codes`, when the caller read the account's open errors in this transaction, spares
    the query for one that is not among them (a racing writer still ends in the unique index).
    """
    now = utc_now()
    known_absent = open_codes is not None and code.value not in open_codes
    existing = None if known_absent else _open_error(session, account, code)
    if existing is not None:
        existing.occurrences += 1
        existing.last_occurred_at = now
        existing.message = message
        return existing
    error = AccountError(
        account_id=account.id,
        code=code.value,
        message=message,
        source=source,
        first_occurred_at=now,
        last_occurred_at=now,
        occurrences=1,
    )
    try:
        with session.begin_nested():
            session.add(error)
    except IntegrityError:
        # Another worker opened it a moment ago: count this one on theirs.
        existing = _open_error(session, account, code)
        if existing is None:
            raise
        existing.occurrences += 1
        existing.last_occurred_at = now
        return existing
    emit(
        session,
        "account.error_opened",
        account.org_id,
        account,
        {"error_id": str(error.id), "code": code.value, "message": message, "source": source},
    )
    return error


def resolve_errors(
    session: Session, account: Account, codes: Collection[str] | None = None
) -> list[AccountError]:
    """Resolve the open errors (all, or those with `codes`): the problem is gone."""
    now = utc_now()
    query = select(AccountError).where(
        AccountError.account_id == account.id, AccountError.resolved_at.is_(None)
    )
    if codes is not None:
        query = query.where(AccountError.code.in_(codes))
    resolved = list(session.scalars(query))
    for error in resolved:
        error.resolved_at = now
        emit(
            session,
            "account.error_resolved",
            account.org_id,
            account,
            {"error_id": str(error.id), "code": error.code, "occurrences": error.occurrences},
        )
    return resolved


def _open_error(session: Session, account: Account, code: ErrorCode) -> AccountError | None:
    return session.scalars(
        select(AccountError).where(
            AccountError.account_id == account.id,
            AccountError.code == code.value,
            AccountError.resolved_at.is_(None),
        )
    ).first()
