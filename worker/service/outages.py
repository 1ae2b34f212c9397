"""Telling a provider outage from one account's trouble: pure rules over the provider's recent
check results, tested without a database. `incidents` records what they decide."""

from __future__ import annotations

import enum
import itertools
import threading
from collections import deque
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.base import ErrorCode, ProviderError
from models import AccountStatus

# What an outage looks like from here: the provider is unreachable, slow, or failing (5xx). A 429
# is about our calls to one account, and a 401 is that account's own problem.
OUTAGE_CODES = frozenset({ErrorCode.PROVIDER_UNAVAILABLE, ErrorCode.TIMEOUT})


def is_outage(outcome: object) -> bool:
    return isinstance(outcome, ProviderError) and outcome.code in OUTAGE_CODES


@dataclass(frozen=True)
class IncidentPolicy:
    """When a provider counts as down, and when as recovered."""

    window_seconds: float = 60.0  # recent checks considered
    min_checks: int = 10  # fewer than this tells nothing either way
    start_share: float = 0.5  # share of recent checks failing with an outage code
    # Above this share the provider is suspect: a temporary failure is not yet blamed on its
    # account, which is retried instead (see `verdicts.judge`).
    suspect_share: float = 0.2
    recover_passes: int = 5  # consecutive passes that end an incident


class Health(enum.StrEnum):
    """What the recent checks say of a provider."""

    UNKNOWN = "unknown"  # too few checks to tell
    HEALTHY = "healthy"
    SUSPECT = "suspect"  # many failing, short of an incident
    DOWN = "down"  # an incident is open


class Change(enum.StrEnum):
    """What becomes of the provider's incident."""

    NONE = "none"  # none open, none to start
    START = "start"
    CONTINUE = "continue"
    END = "end"


@dataclass(frozen=True)
class Outlook:
    change: Change
    health: Health


def outlook(policy: IncidentPolicy, seen: Sequence[bool], *, incident_open: bool) -> Outlook:
    """Start, continue or end the provider's incident, and how healthy it looks.

    `seen`: whether each recent check failed with an outage code, oldest first, counted from the
    open incident's start, or else from when the last one ended (so an incident that just ended
    is not reopened by the failures that made it).
    """
    if incident_open:
        trailing = len(seen) - max((i + 1 for i, failed in enumerate(seen) if failed), default=0)
        if trailing >= policy.recover_passes:
            return Outlook(Change.END, Health.HEALTHY)
        return Outlook(Change.CONTINUE, Health.DOWN)
    failed = sum(seen)
    if len(seen) < policy.min_checks:
        return Outlook(Change.NONE, Health.UNKNOWN)
    if failed >= policy.start_share * len(seen):
        return Outlook(Change.START, Health.DOWN)
    if failed >= policy.suspect_share * len(seen):
        return Outlook(Change.NONE, Health.SUSPECT)
    return Outlook(Change.NONE, Health.HEALTHY)


def window_start(policy: IncidentPolicy, now: datetime, after: datetime | None) -> datetime:
    """Where the recent checks begin: the window back from `now`, or `after` when later (the
    open incident's start, or the last one's end)."""
    start = now - timedelta(seconds=policy.window_seconds)
    return after if after is not None and after > start else start


def wants_shared(
    policy: IncidentPolicy, seen: Sequence[bool], *, incident_open: bool, outage: bool
) -> bool:
    """Whether to ask what other processes saw: an outage failure to judge, no incident open,
    and too few checks of this process's own to tell (a fresh process, or one that only runs
    `accounts.check` jobs)."""
    return outage and not incident_open and len(seen) < policy.min_checks


def with_shared(
    policy: IncidentPolicy,
    seen: Sequence[bool],
    seen_failing: Collection[Hashable],
    shared_failing: Iterable[Hashable],
) -> list[bool]:
    """This process's recent checks, and, while they are too few to tell, one failing check for
    each other account that the shared record shows failing with an outage code in the window
    (each account once: those this process saw failing are in `seen` already). The shared
    record holds failures only, not passes, so it is consulted only while the process's own
    sample is thin; `outlook` then judges the lot by the same rules."""
    if len(seen) >= policy.min_checks:
        return list(seen)
    others = {a for a in shared_failing if a not in seen_failing}
    return [True] * len(others) + list(seen)


def absorbed_status(status: str, still_open: Collection[str]) -> AccountStatus | None:
    """The status an account takes when the provider's incident takes its outage errors: a
    `degraded` account with no other open error is `connected` again; any other keeps its
    status (None)."""
    if status == AccountStatus.DEGRADED and not still_open:
        return AccountStatus.CONNECTED
    return None


class RecentChecks:
    """Each provider's recent check results as this process saw them: (time, outage?, account)
    triples (the account, when given, lets `with_shared` count each failing account once).

    Per process on purpose: every worker process sees a random sample of each provider's checks,
    which is enough to tell an outage, and the incident itself is shared through the database.
    A batch and an `accounts.check` job of one process add to the same (`incidents.recent_for`);
    jobs may run in threads, hence the lock.
    """

    def __init__(self, policy: IncidentPolicy, size: int = 2000) -> None:
        self.policy = policy
        self._seen: dict[str, deque[tuple[datetime, bool, Hashable]]] = {}
        self._size = size
        self._lock = threading.Lock()

    def add(
        self,
        provider: str,
        now: datetime,
        outages: Iterable[bool],
        accounts: Iterable[Hashable] | None = None,
    ) -> None:
        keys: Iterable[Hashable] = itertools.repeat(None) if accounts is None else accounts
        with self._lock:
            seen = self._seen.setdefault(provider, deque(maxlen=self._size))
            seen.extend((now, failed, key) for failed, key in zip(outages, keys, strict=False))

    def since(self, provider: str, now: datetime, after: datetime | None) -> list[bool]:
        """The results inside the window, oldest first, later than `after` when given."""
        start = window_start(self.policy, now, after)
        with self._lock:
            return [failed for when, failed, _ in self._seen.get(provider, ()) if when > start]

    def failing(self, provider: str, now: datetime, after: datetime | None) -> set[Hashable]:
        """The accounts with an outage failure inside the window (those added with one)."""
        start = window_start(self.policy, now, after)
        with self._lock:
            return {
                key
                for when, failed, key in self._seen.get(provider, ())
                if failed and key is not None and when > start
            }

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()
