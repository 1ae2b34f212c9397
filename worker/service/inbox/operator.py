"""What needs a person or a second sending: rows whose queue message was lost (for the
sweeper), the unroutable and failed events listed, and one put back to be processed again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, AuditCause, InboundEvent, InboundStatus, utc_now
from worker.service import audit, views
from worker.service.inbox.policy import SWEEP_GRACE
from worker.service.outcomes import Reason, Rejected


def due_for_requeue(
    session: Session, grace: timedelta = SWEEP_GRACE, limit: int = 5000
) -> list[uuid.UUID]:
    """Events still `received` well after they arrived (their queue message was lost, or a
    worker died holding it) whose retry, if any, is due."""
    now = utc_now()
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.status == InboundStatus.RECEIVED,
            InboundEvent.received_at < now - grace,
            (InboundEvent.next_attempt_at.is_(None)) | (InboundEvent.next_attempt_at <= now),
        )
        .order_by(InboundEvent.received_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def list_events(
    session: Session, status: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Newest first; by default what needs attention (unroutable and failed)."""
    query = select(InboundEvent).order_by(InboundEvent.received_at.desc()).limit(limit)
    if status is None:
        query = query.where(
            InboundEvent.status.in_([InboundStatus.UNROUTABLE, InboundStatus.FAILED])
        )
    elif status != "all":
        if status not in {s.value for s in InboundStatus}:
            known = ", ".join([*(s.value for s in InboundStatus), "all"])
            raise Rejected(Reason.INVALID, f"unknown status {status!r}; one of: {known}")
        query = query.where(InboundEvent.status == status)
    return [views.event_view(row) for row in session.scalars(query)]


def replay(session: Session, ref: str) -> dict[str, Any]:
    """Put an unroutable or failed event back to `received`; the caller queues it after commit.
    `ref` is the inbox id, or the provider's event id when that names one event."""
    row = _find(session, ref)
    if row.status == InboundStatus.PROCESSED:
        raise Rejected(Reason.INVALID, "the event was processed; replaying it would apply it twice")
    account = session.get(Account, row.account_id) if row.account_id is not None else None
    audit.record(
        session,
        "event.replayed",
        org_id=account.org_id if account is not None else None,
        account_id=row.account_id,
        actor=None,
        cause=AuditCause.OPERATOR,
        details={"event_id": str(row.id), "provider": row.provider, "was": row.status},
    )
    row.status = InboundStatus.RECEIVED
    row.attempts = 0
    row.last_error = None
    row.next_attempt_at = None
    row.effect = None
    session.flush()
    return views.event_view(row)


def _find(session: Session, ref: str) -> InboundEvent:
    try:
        key: uuid.UUID | None = uuid.UUID(ref)
    except ValueError:
        key = None
    if key is not None:
        row = session.scalars(
            select(InboundEvent).where(InboundEvent.id == key).with_for_update()
        ).first()
        if row is not None:
            return row
    # Not an inbox id: the provider's event id (Shopify's webhook ids are UUIDs too).
    rows = list(
        session.scalars(
            select(InboundEvent).where(InboundEvent.provider_event_id == ref).with_for_update()
        )
    )
    if len(rows) > 1:
        raise Rejected(
            Reason.INVALID, f"{ref!r} names events of several providers; give the inbox id"
        )
    if not rows:
        raise Rejected(Reason.NOT_FOUND, f"no stored event {ref!r}")
    return rows[0]
