"""When an account is next checked, from what its check found: a pure decision over plain data
(status, failures in a row, token expiry, the verdict and outcome of its last check)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from connectors.base import ProviderError
from models import Account, AccountStatus
from worker.service.checks.verdicts import CheckOutcome, Verdict


@dataclass(frozen=True)
class Cadence:
    """How often an account is checked, by what its last check found.

    Healthy: every `interval`. A temporary failure: sooner, backing off exponentially up to the
    interval. `error` (a person must act, unreadable credentials included): every `error_factor`
    intervals. `disconnected`: never. Expiring tokens: due `refresh_ahead` before they expire,
    whatever the rest says. Every delay is shortened by up to `jitter` so accounts added
    together spread out.
    """

    interval: float
    jitter: float = 0.1
    retry_divisor: float = 15.0
    error_factor: float = 6.0
    refresh_ahead: float = 600.0
    max_lease: float = 300.0

    @property
    def lease(self) -> timedelta:
        """How long a claim holds an account; a lost batch is claimed again after this."""
        return timedelta(seconds=min(self.interval / 2, self.max_lease))

    def first(self, now: datetime, rng: random.Random) -> datetime:
        """A new account's first scheduled check: anywhere in the coming interval."""
        return now + timedelta(seconds=rng.uniform(0, self.interval))

    def retry_delay(self, failures: int) -> float:
        base = max(1.0, self.interval / self.retry_divisor)
        return min(self.interval, base * 2 ** max(0, failures - 1))

    def renew_at(self, expires_at: datetime | None) -> datetime | None:
        if expires_at is None:
            return None
        return expires_at - timedelta(seconds=self.refresh_ahead)

    def next_check(
        self,
        account: Account,
        verdict: Verdict,
        outcome: CheckOutcome | None,
        now: datetime,
        rng: random.Random,
    ) -> datetime | None:
        return self.due(
            account.status,
            account.consecutive_failures,
            account.credentials_expire_at,
            verdict,
            outcome,
            now,
            rng,
        )

    def due(
        self,
        status: str,
        failures: int,
        expires_at: datetime | None,
        verdict: Verdict,
        outcome: CheckOutcome | None,
        now: datetime,
        rng: random.Random,
    ) -> datetime | None:
        """When an account with this status and record is next checked; None: never."""
        if status == AccountStatus.DISCONNECTED:
            return None
        floor = 0.0
        if status == AccountStatus.ERROR:
            delay = self.interval * self.error_factor
        elif verdict in (Verdict.INCIDENT, Verdict.STALE):
            delay = self.interval  # back off from a provider that is down for everyone
        elif verdict is Verdict.CRASHED or (
            isinstance(outcome, ProviderError) and outcome.temporary
        ):
            delay = self.retry_delay(max(1, failures))
            if isinstance(outcome, ProviderError) and outcome.retry_after:
                floor = outcome.retry_after  # the provider said when; not sooner
        else:
            delay = self.interval
        jittered = max(floor, delay * rng.uniform(1 - self.jitter, 1))
        due = now + timedelta(seconds=jittered)
        renew = self.renew_at(expires_at)
        if renew is not None and now < renew < due:
            due = renew
        return due
