"""Provider incidents: when many of one provider's recent checks fail temporarily at once, one
incident is recorded instead of an error on every account; it ends when checks pass again."""

from __future__ import annotations

import uuid
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from connectors.base import ErrorCode, ProviderError
from models import ProviderIncident
from worker.service.records import emit

log = structlog.get_logger(__name__)

# What an outage looks like from here: the provider is unreachable, slow, or failing (5xx). A 429
# is about our calls to one account, and a 401 is that account's own problem.
OUTAGE_CODES = frozenset({ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.TIMEOUT})
# Incident events concern every organization using the provider.
ALL_ORGS = "*"
STARTED = "provider.incident_started"
ENDED = "provider.incident_ended"


def is_outage(outcome: object) -> bool:
    return isinstance(outcome, ProviderError) and outcome.code in OUTAGE_CODES


@dataclass(frozen=True)
class IncidentPolicy:
    """When a provider counts as down, and when as recovered."""

    window_seconds: float = 60.0  # recent checks considered
    min_checks: int = 10  # fewer than this tells nothing either way
    start_share: float = 0.5  # share of recent checks failing with an outage code
    # Above this share (or with too few checks to tell) the provider is suspect: a temporary
    # failure is not yet blamed on its account, which is retried instead (see Cadence.hold).
    suspect_share: float = 0.2
    recover_passes: int = 5  # consecutive passes that end an incident


class RecentChecks:
    """Each provider's recent check results as this process saw them: (time, outage?) pairs.

    Per process on purpose: every worker process sees a random sample of each provider's checks,
    which is enough to tell an outage, and the incident itself is shared through the database.
    """

    def __init__(self, policy: IncidentPolicy, size: int = 2000) -> None:
        self.policy = policy
        self._seen: dict[str, deque[tuple[datetime, bool]]] = {}
        self._size = size

    def add(self, provider: str, now: datetime, outages: Iterable[bool]) -> None:
        seen = self._seen.setdefault(provider, deque(maxlen=self._size))
        seen.extend((now, failed) for failed in outages)

    def since(self, provider: str, now: datetime, after: datetime | None) -> list[bool]:
        """The results inside the window, oldest first, later than `after` when given."""
        start = now - timedelta(seconds=self.policy.window_seconds)
        if after is not None and after > start:
            start = after
        return [failed for when, failed in self._seen.get(provider, ()) if when > start]

    def clear(self) -> None:
        self._seen.clear()


@dataclass
class Assessment:
    """What a batch of one provider's checks means: an open incident (or none), and whether the
    provider is suspect (too few recent checks to tell, or many failing) short of an incident."""

    incident: ProviderIncident | None
    suspect: bool
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
    """Add a batch's outcomes to the recent checks and open or end the provider's incident.

    Only checks after the last incident ended count towards a new one, so an incident that just
    ended is not reopened by the failures that made it.
    """
    policy = recent.policy
    recent.add(provider, now, (is_outage(o) for o in outcomes))
    current = open_incident(session, provider)
    if current is None:
        seen = recent.since(provider, now, last_ended_at(session, provider))
        failed = sum(seen)
        if len(seen) < policy.min_checks:
            return Assessment(None, suspect=True)
        if failed >= policy.start_share * len(seen):
            started = _start(session, provider, outcomes, len(seen), failed, now)
            return Assessment(started, suspect=True, started=True)
        return Assessment(None, suspect=failed >= policy.suspect_share * len(seen))
    seen = recent.since(provider, now, current.started_at)
    trailing = len(seen) - max((i + 1 for i, failed in enumerate(seen) if failed), default=0)
    if trailing >= policy.recover_passes and _end(session, current, now):
        return Assessment(None, suspect=False, ended=True)
    return Assessment(current, suspect=True)


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
