"""What the operator CLI reads and does, as plain functions over a session (no roles: the
operator runs on the worker's own machine with its credentials). The status screen's figures are
grouped counts and index lookups, cheap at any number of accounts and events."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from models import (
    Account,
    AccountError,
    AuditCause,
    InboundEvent,
    InboundStatus,
    OutboxEvent,
    ProviderIncident,
    StatusChange,
    utc_now,
)
from worker.service import audit, incidents, inputs, views
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


def list_accounts(
    session: Session, org_id: str | None, status: str | None = None
) -> list[dict[str, Any]]:
    """One organization's accounts, or every organization's (`org_id` None), maybe of one status."""
    query = select(Account).order_by(Account.org_id, Account.created_at, Account.id)
    if org_id is not None:
        query = query.where(Account.org_id == inputs.org_id(org_id, "org"))
    if status is not None:
        query = query.where(Account.status == status)
    return [views.summary(a) for a in session.scalars(query)]


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
                audit.record(
                    session,
                    "credentials.rotated",
                    org_id=account.org_id,
                    account_id=account.id,
                    actor=None,
                    cause=AuditCause.OPERATOR,
                )
            done += len(rows)
        if len(rows) < batch:
            return done
        last = rows[-1].id


# Counting a backlog stops here: past it the number says "this many or more" at a bounded cost.
BACKLOG_CAP = 100_000


def status(session: Session, now: datetime | None = None) -> dict[str, Any]:
    """The status screen's figures, but for the workers (asked over the broker, not here)."""
    now = now or utc_now()
    by_provider: dict[str, dict[str, int]] = {}
    for type_, state, count in session.execute(
        select(Account.type, Account.status, func.count()).group_by(Account.type, Account.status)
    ):
        by_provider.setdefault(type_, {})[state] = count
    open_ones = session.scalars(
        select(ProviderIncident)
        .where(ProviderIncident.ended_at.is_(None))
        .order_by(ProviderIncident.started_at)
    )
    inbox = {
        state: backlog(
            session,
            InboundEvent.status == state,
            InboundEvent.received_at,
            InboundEvent.received_at,
            now,
        )
        for state in (InboundStatus.RECEIVED, InboundStatus.UNROUTABLE, InboundStatus.FAILED)
    }
    return {
        "accounts": {
            "total": sum(sum(states.values()) for states in by_provider.values()),
            "by_provider": {t: dict(sorted(s.items())) for t, s in sorted(by_provider.items())},
        },
        "incidents": [incidents.view(i) for i in open_ones],
        "inbox": {str(k): v for k, v in inbox.items()},
        "outbox": {
            "unpublished": backlog(
                session,
                OutboxEvent.published_at.is_(None),
                OutboxEvent.occurred_at,
                OutboxEvent.seq,
                now,
            )
        },
    }


def backlog(
    session: Session, where: ColumnElement[bool], since: Any, order: Any, now: datetime
) -> dict[str, Any]:
    """How many rows match (counted up to BACKLOG_CAP) and how old the first in `order` is (its
    time `since`): both served by the partial indexes on what is waiting, never a scan of what
    is done."""
    count = session.scalar(
        select(func.count()).select_from(
            select(literal(1)).where(where).limit(BACKLOG_CAP + 1).subquery()
        )
    )
    oldest = session.scalar(select(since).where(where).order_by(order).limit(1))
    return {
        "count": min(count or 0, BACKLOG_CAP),
        "capped": (count or 0) > BACKLOG_CAP,
        "oldest_at": views.iso(oldest),
        "age_seconds": round((now - oldest).total_seconds(), 1) if oldest is not None else None,
    }
