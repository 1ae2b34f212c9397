"""The JSON shapes of the contract: account summary and details, job results, inbox events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from models import Account, AccountError, InboundEvent, StatusChange

SECRET_FIELDS = ("api_key", "access_token", "refresh_token", "webhook_secret", "code")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def summary(account: Account) -> dict[str, Any]:
    return {
        "id": str(account.id),
        "org_id": account.org_id,
        "name": account.name,
        "type": account.type,
        "status": account.status,
        "created_at": iso(account.created_at),
        "updated_at": iso(account.updated_at),
    }


def details(session: Session, account: Account, *, recent: int = 50) -> dict[str, Any]:
    errors = session.scalars(
        select(AccountError)
        .where(AccountError.account_id == account.id)
        .order_by(
            case((AccountError.resolved_at.is_(None), 0), else_=1),
            AccountError.resolved_at.desc(),
            AccountError.last_occurred_at.desc(),
        )
        .limit(recent)
    )
    history = session.scalars(
        select(StatusChange)
        .where(StatusChange.account_id == account.id)
        .order_by(StatusChange.occurred_at.desc(), StatusChange.id.desc())
        .limit(recent)
    )
    return {
        **summary(account),
        "connection": account.connection,
        "metadata": account.meta,
        "settings": account.settings,
        "last_checked_at": iso(account.last_checked_at),
        "integrations": [{"id": i.integration_id, "name": i.name} for i in account.integrations],
        "errors": [error_view(e) for e in errors],
        "status_history": [change_view(c) for c in history],
    }


def error_view(error: AccountError) -> dict[str, Any]:
    return {
        "id": str(error.id),
        "code": error.code,
        "message": error.message,
        "source": error.source,
        "first_occurred_at": iso(error.first_occurred_at),
        "last_occurred_at": iso(error.last_occurred_at),
        "occurrences": error.occurrences,
        "resolved_at": iso(error.resolved_at),
    }


def change_view(change: StatusChange) -> dict[str, Any]:
    return {
        "from": change.from_status,
        "to": change.to_status,
        "reason": change.reason,
        "source": change.source,
        "actor": change.actor,
        "occurred_at": iso(change.occurred_at),
    }


def event_view(row: InboundEvent) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "provider": row.provider,
        "provider_event_id": row.provider_event_id,
        "topic": row.topic,
        "route_key": row.route_key,
        "account_id": str(row.account_id) if row.account_id else None,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "effect": row.effect,
        "occurred_at": iso(row.occurred_at),
        "received_at": iso(row.received_at),
        "processed_at": iso(row.processed_at),
        "next_attempt_at": iso(row.next_attempt_at),
    }
