"""Provider incidents: when many of one provider's recent checks fail temporarily at once, one
incident is recorded instead of an error on every account; it ends when checks pass again. The
rules are `outages.outlook`; this module reads and writes what they decide."""

from __future__ import annotations

import uuid
import weakref
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from connectors.base import ErrorCode, ProviderError
from models import Database, ProviderIncident
from worker.service.outages import (
    Change,
    Health,
    IncidentPolicy,
    RecentChecks,
    is_outage,
    outlook,
)
from worker.service.records import emit

log = structlog.get_logger(__name__)

# Incident events concern every organization using the provider.
ALL_ORGS = "*"
STARTED = "provider.incident_started"
ENDED = "provider.incident_ended"

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
    outcomes: Sequence[object],
    recent: RecentChecks,
    now: datetime,
) -> Assessment:
    """Add checks' outcomes to the recent checks, then open, keep or end the provider's incident
    as `outages.outlook` says."""
    recent.add(provider, now, (is_outage(o) for o in outcomes))
    current = open_incident(session, provider)
    after = current.started_at if current is not None else last_ended_at(session, provider)
    seen = recent.since(provider, now, after)
    verdict = outlook(recent.policy, seen, incident_open=current is not None)
    if verdict.change is Change.START:
        started = _start(session, provider, outcomes, len(seen), sum(seen), now)
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


def _start(
    session: Session,
    provider: str,
    outcomes: Sequence[object],
    checks: int,
    failures: int,
    now: datetime,
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
    emit(session, STARTED, ALL_ORGS, None, view(incident))
    log.warning("provider_incident_started", provider=provider, reason=reason)
    return incident


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
