"""Provider incidents: when many of one provider's recent checks fail temporarily at once, one
incident is recorded instead of an error on every account; it ends when checks pass again. The
rules are `outages.outlook`; this module reads and writes what they decide.

Each process judges by its own recent checks; while those are too few (a fresh process, one that
only runs `accounts.check` jobs), it adds the outage errors other processes recorded, read from
the open errors. When an incident starts, the outage errors its window opened are resolved and
their accounts connected again: the failures were the provider's, and the few checks that ran
before the incident was known leave nothing behind."""

from __future__ import annotations

import uuid
import weakref
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from connectors.base import ErrorCode, ProviderError
from models import Account, AccountError, Database, ProviderIncident
from worker.service.outages import (
    OUTAGE_CODES,
    Change,
    Health,
    IncidentPolicy,
    RecentChecks,
    absorbed_status,
    is_outage,
    outlook,
    wants_shared,
    window_start,
    with_shared,
)
from worker.service.records import emit, resolve_errors, set_status

log = structlog.get_logger(__name__)

# Incident events concern every organization using the provider.
ALL_ORGS = "*"
STARTED = "provider.incident_started"
ENDED = "provider.incident_ended"
OUTAGE_VALUES = frozenset(c.value for c in OUTAGE_CODES)

_recent: weakref.WeakKeyDictionary[Database, dict[IncidentPolicy, RecentChecks]] = (
    weakref.WeakKeyDictionary()
)


def recent_for(db: Database, policy: IncidentPolicy | None = None) -> RecentChecks:
    """This process's recent checks of the providers behind `db`: one per process and database,
    so the scheduled batches and the `accounts.check` jobs of a process judge by the same."""
    by_policy = _recent.setdefault(db, {})
    wanted = policy or IncidentPolicy()
    return by_policy.setdefault(wanted, RecentChecks(wanted))


@dataclass
class Assessment:
    """What one provider's latest checks mean: its open incident (or none) and its health."""

    incident: ProviderIncident | None
    health: Health
    started: bool = False
    ended: bool = False


def open_incident(session: Session, provider: str) -> ProviderIncident | None:
    return session.scalars(
        select(ProviderIncident)
        .where(ProviderIncident.provider == provider, ProviderIncident.ended_at.is_(None))
        .order_by(ProviderIncident.started_at)
        .limit(1)
    ).first()


def last_ended_at(session: Session, provider: str) -> datetime | None:
    return session.scalars(
        select(ProviderIncident.ended_at)
        .where(ProviderIncident.provider == provider, ProviderIncident.ended_at.is_not(None))
        .order_by(ProviderIncident.ended_at.desc())
        .limit(1)
    ).first()


def assess(
    session: Session,
    provider: str,
    outcomes: Mapping[uuid.UUID, object],
    recent: RecentChecks,
    now: datetime,
) -> Assessment:
    """Add checks' outcomes (by account) to the recent checks, then open, keep or end the
    provider's incident as `outages.outlook` says.

    While this process's own checks are too few to tell and one of these failed like an outage,
    the provider's advisory lock is taken (so such checks of every process are judged one after
    another, each seeing what the previous ones recorded) and the other processes' recorded
    outage failures are added (`outages.with_shared`)."""
    recent.add(provider, now, (is_outage(o) for o in outcomes.values()), outcomes.keys())
    current = open_incident(session, provider)
    after = current.started_at if current is not None else last_ended_at(session, provider)
    seen = recent.since(provider, now, after)
    outage = any(is_outage(o) for o in outcomes.values())
    if wants_shared(recent.policy, seen, incident_open=current is not None, outage=outage):
        _lock_provider(session, provider)
        current = open_incident(session, provider)  # another process may have started one
        after = current.started_at if current is not None else last_ended_at(session, provider)
        seen = recent.since(provider, now, after)
        if current is None:
            since = window_start(recent.policy, now, after)
            mine = recent.failing(provider, now, after)
            others = shared_failures(session, provider, since, recent.policy.min_checks + len(mine))
            seen = with_shared(recent.policy, seen, mine, others)
    verdict = outlook(recent.policy, seen, incident_open=current is not None)
    if verdict.change is Change.START:
        since = window_start(recent.policy, now, after)
        started = _start(session, provider, outcomes.values(), len(seen), sum(seen), now, since)
        return Assessment(started, verdict.health, started=True)
    if verdict.change is Change.END and current is not None:
        if _end(session, current, now):
            return Assessment(None, verdict.health, ended=True)
        return Assessment(current, Health.DOWN)  # another process ended it meanwhile
    return Assessment(current, verdict.health)


def count_failures(session: Session, incident: ProviderIncident, failures: int) -> None:
    """Checks that failed during the incident are counted on it, not on their accounts."""
    if failures:
        session.execute(
            update(ProviderIncident)
            .where(ProviderIncident.id == incident.id)
            .values(failed_checks=ProviderIncident.failed_checks + failures)
            .execution_options(synchronize_session=False)
        )


def _lock_provider(session: Session, provider: str) -> None:
    """Serialize opening an incident per provider across processes (PostgreSQL; SQLite already
    allows one writer at a time)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"provider-incident:{provider}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def shared_failures(session: Session, provider: str, since: datetime, limit: int) -> set[uuid.UUID]:
    """Up to `limit` of the provider's accounts with an open outage error that occurred after
    `since`, as every process recorded them. It reads the open errors only (the partial index
    `uq_account_errors_open`, or the table while it is small), each joined to its account by
    primary key: its cost follows the open errors, not the accounts."""
    return set(
        session.scalars(
            select(AccountError.account_id)
            .join(Account, Account.id == AccountError.account_id)
            .where(
                AccountError.resolved_at.is_(None),
                AccountError.code.in_(OUTAGE_VALUES),
                AccountError.last_occurred_at > since,
                Account.type == provider,
            )
            .distinct()
            .limit(limit)
        )
    )


def _start(
    session: Session,
    provider: str,
    outcomes: Iterable[object],
    checks: int,
    failures: int,
    now: datetime,
    since: datetime,
) -> ProviderIncident:
    _lock_provider(session, provider)
    existing = open_incident(session, provider)
    if existing is not None:
        return existing  # another process opened it while we decided
    codes = Counter(o.code.value for o in outcomes if isinstance(o, ProviderError) and is_outage(o))
    common = codes.most_common(1)[0][0] if codes else ErrorCode.PROVIDER_UNAVAILABLE.value
    reason = f"{failures} of the last {checks} {provider} checks failed ({common})"
    incident = ProviderIncident(
        id=uuid.uuid4(), provider=provider, reason=reason, started_at=now, failed_checks=0
    )
    session.add(incident)
    session.flush()
    incident.failed_checks = _absorb(session, incident, since)
    session.flush()
    emit(session, STARTED, ALL_ORGS, None, view(incident))
    log.warning(
        "provider_incident_started",
        provider=provider,
        reason=reason,
        absorbed=incident.failed_checks,
    )
    return incident


def _absorb(session: Session, incident: ProviderIncident, since: datetime) -> int:
    """The incident takes the outage errors its provider's accounts opened since `since`: they
    are resolved, and a `degraded` account left with no open error is `connected` again, with a
    status change naming the incident. Accounts another transaction holds are skipped, not
    waited for (it records a check of its own, judged after this incident commits). Returns the
    failures taken (the errors' occurrences). Found, like `shared_failures`, from the open
    errors, and locked in the same statement."""
    opened = select(AccountError.account_id).where(
        AccountError.resolved_at.is_(None),
        AccountError.code.in_(OUTAGE_VALUES),
        AccountError.first_occurred_at > since,
    )
    accounts = session.scalars(
        select(Account)
        .where(Account.id.in_(opened.scalar_subquery()), Account.type == incident.provider)
        .order_by(Account.id)
        .with_for_update(skip_locked=True)
    ).all()
    reason = (
        f"{incident.provider} is failing for many accounts (incident {incident.id}): the "
        "provider's incident took the failure"
    )
    failures = 0
    for account in accounts:
        failures += sum(e.occurrences for e in resolve_errors(session, account, OUTAGE_VALUES))
        left = session.scalars(
            select(AccountError.code).where(
                AccountError.account_id == account.id, AccountError.resolved_at.is_(None)
            )
        ).all()
        restored = absorbed_status(account.status, left)
        if restored is not None:
            set_status(session, account, restored, reason, "check")
    return failures


def _end(session: Session, incident: ProviderIncident, now: datetime) -> bool:
    locked = session.scalars(
        select(ProviderIncident).where(ProviderIncident.id == incident.id).with_for_update()
    ).one()
    if locked.ended_at is not None:
        return False  # another process ended it
    locked.ended_at = now
    session.flush()
    session.refresh(locked, ["failed_checks"])
    emit(session, ENDED, ALL_ORGS, None, view(locked))
    log.info("provider_incident_ended", provider=locked.provider, failed=locked.failed_checks)
    return True


def view(incident: ProviderIncident) -> dict[str, Any]:
    return {
        "id": str(incident.id),
        "provider": incident.provider,
        "reason": incident.reason,
        "started_at": incident.started_at.isoformat(),
        "ended_at": incident.ended_at.isoformat() if incident.ended_at else None,
        "failed_checks": incident.failed_checks,
    }


def list_incidents(session: Session, *, limit: int = 50) -> list[dict[str, Any]]:
    """Open incidents first, then the most recent ended ones."""
    rows = session.scalars(
        select(ProviderIncident)
        .order_by(ProviderIncident.ended_at.is_not(None), ProviderIncident.started_at.desc())
        .limit(limit)
    )
    return [view(i) for i in rows]
