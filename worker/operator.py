"""What the operator CLI reads and does, as plain functions over a session (no roles: the
operator runs on the worker's own machine with its credentials)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, AccountError, StatusChange
from worker.service import views
from worker.service.deps import Deps
from worker.service.outcomes import Reason, Rejected


def account_by_id(session: Session, account_id: str) -> Account:
    try:
        key = uuid.UUID(account_id)
    except ValueError:
        raise Rejected(Reason.INVALID, f"not an account id: {account_id!r}") from None
    account = session.get(Account, key)
    if account is None:
        raise Rejected(Reason.NOT_FOUND, f"no account {account_id}")
    return account


def list_accounts(session: Session, org_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Account).where(Account.org_id == org_id).order_by(Account.created_at)
    )
    return [views.summary(a) for a in rows]


def errors(session: Session, account_id: str) -> list[dict[str, Any]]:
    account = account_by_id(session, account_id)
    rows = session.scalars(
        select(AccountError)
        .where(AccountError.account_id == account.id)
        .order_by(AccountError.resolved_at.is_not(None), AccountError.last_occurred_at.desc())
    )
    return [views.error_view(e) for e in rows]


def history(session: Session, account_id: str) -> list[dict[str, Any]]:
    account = account_by_id(session, account_id)
    rows = session.scalars(
        select(StatusChange)
        .where(StatusChange.account_id == account.id)
        .order_by(StatusChange.occurred_at.desc(), StatusChange.id.desc())
    )
    return [views.change_view(c) for c in rows]


def rotate_keys(deps: Deps, batch: int = 500) -> int:
    """Re-encrypt every account's credentials under the newest key; returns how many."""
    done = 0
    last: uuid.UUID | None = None
    while True:
        with deps.db.unit_of_work() as session:
            query = select(Account).order_by(Account.id).limit(batch).with_for_update()
            if last is not None:
                query = query.where(Account.id > last)
            rows = list(session.scalars(query))
            for account in rows:
                account.credentials = deps.vault.rotate(account.credentials)
            done += len(rows)
        if len(rows) < batch:
            return done
        last = rows[-1].id
