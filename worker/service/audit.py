"""The audit trail: one entry per change, written where the change happens and in its
transaction, so a change that rolls back leaves no entry and a committed one always has its own.

The running job's ids reach the entries through a context variable `run_job` sets around the
job's work (`running_job`), so no service passes them along. Details never hold a secret.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Account, AuditCause, AuditEntry, utc_now
from worker.service import inputs
from worker.service.outcomes import Action, parse_actor, require


@dataclass(frozen=True)
class RunningJob:
    job_id: str
    request_id: str | None


_running: ContextVar[RunningJob | None] = ContextVar("audit_running_job", default=None)
# The jobs running now, by identity. A context copied while a job ran (the connectors' asyncio
# runner copies one once, and keeps it for the process's life) still holds that job after it
# ended; only a job still in this set is current.
_active: dict[int, RunningJob] = {}

# `record`'s default for job_id and request_id: those of the job running now, if any.
CURRENT: Any = object()


@contextmanager
def running_job(job_id: str, request_id: str | None) -> Iterator[None]:
    """Within this block, entries name this job (and its request_id)."""
    running = RunningJob(job_id, request_id)
    token = _running.set(running)
    _active[id(running)] = running
    try:
        yield
    finally:
        _active.pop(id(running), None)
        _running.reset(token)


def current_job() -> RunningJob | None:
    running = _running.get()
    return running if running is not None and _active.get(id(running)) is running else None


def record(
    session: Session,
    action: str,
    *,
    org_id: str | None,
    account_id: uuid.UUID | str | None,
    actor: dict[str, Any] | None,
    cause: str,
    job_id: str | None = CURRENT,
    request_id: str | None = CURRENT,
    outcome: Any = "succeeded",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry in the caller's transaction. `details` must hold no secret."""
    running = current_job()
    if job_id is CURRENT:
        job_id = running.job_id if running is not None else None
    if request_id is CURRENT:
        request_id = running.request_id if running is not None else None
    entry = AuditEntry(
        id=uuid.uuid4(),
        occurred_at=utc_now(),
        org_id=org_id,
        account_id=uuid.UUID(str(account_id)) if account_id is not None else None,
        action=action,
        actor=actor,
        cause=cause,
        job_id=job_id,
        request_id=request_id,
        outcome=outcome,
        details=details or {},
    )
    session.add(entry)
    return entry


def account_change(
    session: Session,
    action: str,
    account: Account,
    actor: dict[str, Any] | None,
    details: dict[str, Any] | None = None,
    outcome: Any = "succeeded",
) -> AuditEntry:
    """A job's change to one account, as its actor made it."""
    return record(
        session,
        action,
        org_id=account.org_id,
        account_id=account.id,
        actor=actor,
        cause=AuditCause.JOB,
        outcome=outcome,
        details=details,
    )


def view(entry: AuditEntry) -> dict[str, Any]:
    """An entry as the read API and the CLI show it."""
    return {
        "id": str(entry.id),
        "occurred_at": entry.occurred_at.isoformat(),
        "action": entry.action,
        "actor": entry.actor,
        "cause": entry.cause,
        "account_id": str(entry.account_id) if entry.account_id is not None else None,
        "job_id": entry.job_id,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "details": entry.details,
    }


def entries(
    session: Session, org_id: Any, *, account_id: Any = None, limit: int = 500
) -> list[dict[str, Any]]:
    """The organization's entries (or one account's), newest first."""
    org = inputs.org_id(org_id)
    query = select(AuditEntry).where(AuditEntry.org_id == org)
    if account_id is not None:
        try:
            target = uuid.UUID(str(account_id))
        except ValueError:
            raise inputs.invalid({"account_id": "must be an account id (a UUID)"}) from None
        query = query.where(AuditEntry.account_id == target)
    query = query.order_by(AuditEntry.occurred_at.desc(), AuditEntry.id).limit(limit)
    return [view(e) for e in session.scalars(query)]


def read(session: Session, *, org_id: Any, actor: Any, account_id: Any = None) -> dict[str, Any]:
    """The read API's answer: admins and collaborators read the trail, readers may not."""
    who = parse_actor(actor)
    require(who, Action.DETAILS)
    return {"entries": entries(session, org_id, account_id=account_id)}
