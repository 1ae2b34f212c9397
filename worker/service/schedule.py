"""Due-based health checks: a tick claims the accounts whose check is due under a lease, batches of
them are checked concurrently on one event loop, and each account's next check is set from what
its check found (cadence, backoff, token expiry)."""

from __future__ import annotations

import asyncio
import enum
import functools
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from sqlalchemy import Table, bindparam, case, literal, null, select, update
from sqlalchemy.orm import Session

from connectors import CheckResult, ProviderError
from models import Account, AccountError, AccountStatus, Database, after_commit, utc_now
from worker.service import incidents
from worker.service.checks import CheckOutcome, Probe, apply_outcome, probe_async
from worker.service.deps import Deps
from worker.service.incidents import Assessment, IncidentPolicy, RecentChecks

log = structlog.get_logger(__name__)

DISCONNECTED = AccountStatus.DISCONNECTED.value


@dataclass(frozen=True)
class Cadence:
    """How often an account is checked, by what its last check found.

    Healthy: every `interval`. A temporary failure: sooner, backing off exponentially up to the
    interval. `error` (a person must act): every `error_factor` intervals. `disconnected`: never.
    Expiring tokens: due `refresh_ahead` before they expire, whatever the rest says. Every delay
    is shortened by up to `jitter` so accounts added together spread out.
    """

    interval: float
    jitter: float = 0.1
    retry_divisor: float = 15.0
    error_factor: float = 6.0
    refresh_ahead: float = 600.0
    max_lease: float = 300.0
    # A temporary failure flips a healthy account to degraded only when it repeats: the retry
    # comes after the provider's other checks have shown whether it is an outage.
    confirm_after: int = 2
    # While the provider is suspect (few checks seen, or many failing), hold up to this many.
    hold_limit: int = 5

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
        if status == DISCONNECTED:
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


class Verdict(enum.StrEnum):
    """What became of one account's check in a batch."""

    RECORDED = "recorded"  # status, errors and events written from the outcome
    HELD = "held"  # a temporary failure not yet confirmed: retried sooner, nothing recorded
    INCIDENT = "incident"  # an outage failure during a provider incident: counted there
    STALE = "stale"  # the credentials changed while we checked: the outcome says nothing
    CRASHED = "crashed"  # the check itself raised (a bug): retried, nothing recorded
    GONE = "gone"  # disconnected meanwhile: unscheduled


@dataclass(frozen=True)
class Batch:
    """Accounts of one provider claimed together until `lease`; the lease is also the token that
    says the claim is still ours (a later claim sets another)."""

    provider: str
    account_ids: tuple[uuid.UUID, ...]
    lease: datetime

    def message(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "account_ids": [str(i) for i in self.account_ids],
            "lease": self.lease.isoformat(),
        }

    @classmethod
    def parse(cls, provider: Any, account_ids: Any, lease: Any) -> Batch:
        """From a message; ValueError when it is not one."""
        if not isinstance(provider, str) or not isinstance(account_ids, list):
            raise ValueError("a batch names its provider and a list of account ids")
        if not isinstance(lease, str):
            raise ValueError("a batch carries its lease as an ISO time")
        when = datetime.fromisoformat(lease)
        if when.tzinfo is None:
            raise ValueError("the lease must have a UTC offset")
        return cls(provider, tuple(uuid.UUID(str(i)) for i in account_ids), when)


def claim_due(
    session: Session, cadence: Cadence, now: datetime, *, limit: int, batch_size: int
) -> list[Batch]:
    """Claim up to `limit` due accounts, oldest due first, by moving their next check to the end
    of a lease, in one statement. Rows another claimer holds are skipped, not waited for.
    Disconnected accounts found due are unscheduled instead."""
    lease = now + cadence.lease
    due = (
        select(Account.id)
        .where(Account.next_check_at <= now)
        .order_by(Account.next_check_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Account)
        .where(Account.id.in_(due.scalar_subquery()))
        .values(
            next_check_at=case(
                (Account.status == DISCONNECTED, null()),
                else_=literal(lease, Account.__table__.c.next_check_at.type),
            ),
            updated_at=Account.updated_at,  # scheduling is not an edit of the account
        )
        .returning(Account.id, Account.type, Account.status)
        .execution_options(synchronize_session=False)
    ).all()
    by_provider: dict[str, list[uuid.UUID]] = defaultdict(list)
    for account_id, type_, status in rows:
        if status != DISCONNECTED:
            by_provider[type_].append(account_id)
    return [
        Batch(provider, tuple(ids[i : i + batch_size]), lease)
        for provider, ids in sorted(by_provider.items())
        for i in range(0, len(ids), batch_size)
    ]


def place_new(
    session: Session, cadence: Cadence, now: datetime, rng: random.Random, *, limit: int = 1000
) -> int:
    """Give accounts that have no next check yet (new, or connected again) one, spread over the
    coming interval, or at their token's renewal time if that comes first."""
    rows = session.execute(
        select(Account.id, Account.credentials_expire_at, Account.updated_at)
        .where(Account.next_check_at.is_(None), Account.status != DISCONNECTED)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return 0
    values = []
    for account_id, expires_at, updated_at in rows:
        due = cadence.first(now, rng)
        renew = cadence.renew_at(expires_at)
        if renew is not None and renew < due:
            due = max(now, renew)
        values.append({"id": account_id, "next_check_at": due, "updated_at": updated_at})
    session.execute(update(Account), values)
    return len(rows)


def tick(
    db: Database,
    cadence: Cadence,
    send: Callable[[Batch], None],
    *,
    rng: random.Random | None = None,
    max_accounts: int = 20_000,
    chunk: int = 2_000,
    batch_size: int = 200,
) -> int:
    """One scheduler tick: place new accounts, then claim what is due, a chunk per transaction,
    and send each chunk's batches once it has committed. Returns how many accounts were claimed.

    Safe from any number of beats at once: claims never overlap. A batch that is never sent or
    never finishes costs only a delay: its lease runs out and a later tick claims it again.
    """
    rng = rng or random.Random()
    with db.unit_of_work() as session:
        place_new(session, cadence, utc_now(), rng)
    claimed = 0
    while claimed < max_accounts:
        with db.unit_of_work() as session:
            want = min(chunk, max_accounts - claimed)
            batches = claim_due(session, cadence, utc_now(), limit=want, batch_size=batch_size)
            for batch in batches:
                after_commit(session, functools.partial(send, batch))
        got = sum(len(b.account_ids) for b in batches)
        claimed += got
        if got < want:
            break
    if claimed:
        log.info("checks_claimed", accounts=claimed)
    return claimed


@dataclass
class BatchReport:
    provider: str
    accounts: int
    checked: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    passed: int = 0
    incident: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class BatchChecker:
    """Checks batches in one worker process: the connectors' event loop and HTTP client, a bound
    on concurrent checks per provider, and the provider's recent checks for incident detection."""

    def __init__(
        self,
        deps: Deps,
        cadence: Cadence,
        *,
        policy: IncidentPolicy | None = None,
        concurrency: int = 64,
        refreshes: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        self.deps = deps
        self.cadence = cadence
        self.recent = RecentChecks(policy or IncidentPolicy())
        self.concurrency = concurrency
        self.refreshes = refreshes
        self.rng = rng or random.Random()

    def run(self, batch: Batch) -> BatchReport:
        started = time.monotonic()
        accounts = self._leased(batch)
        probes = self.deps.connectors.run(self._probe_all(accounts)) if accounts else {}
        with self.deps.db.unit_of_work() as session:
            report = self._record(session, batch, probes)
        report.seconds = round(time.monotonic() - started, 3)
        log.info("checks_batch", **report.as_dict())
        return report

    def _leased(self, batch: Batch) -> list[Account]:
        """The batch's accounts still under this batch's lease (a message delivered twice, or
        after a later claim, finds none)."""
        with self.deps.db.unit_of_work() as session:
            accounts = list(
                session.scalars(
                    select(Account).where(
                        Account.id.in_(batch.account_ids),
                        Account.next_check_at == batch.lease,
                        Account.status != DISCONNECTED,
                    )
                )
            )
            session.expunge_all()
        return accounts

    async def _probe_all(self, accounts: list[Account]) -> dict[uuid.UUID, Probe | BaseException]:
        gate = asyncio.Semaphore(self.concurrency)
        refresh_gate = asyncio.Semaphore(self.refreshes)
        ahead = timedelta(seconds=self.cadence.refresh_ahead)

        async def one(account: Account) -> Probe:
            async with gate:
                return await probe_async(
                    self.deps, account, refresh_ahead=ahead, refresh_gate=refresh_gate
                )

        results = await asyncio.gather(*(one(a) for a in accounts), return_exceptions=True)
        return {a.id: r for a, r in zip(accounts, results, strict=True)}

    def _record(
        self, session: Session, batch: Batch, probes: dict[uuid.UUID, Probe | BaseException]
    ) -> BatchReport:
        """One transaction for the batch: lock its rows, keep those still under our lease, and
        write each outcome. A pass that changes nothing but the times (the common case) is
        written in one statement for all such accounts; anything else goes through the account's
        full record (status, errors, events)."""
        report = BatchReport(batch.provider, len(batch.account_ids))
        if not probes:
            return report
        now = utc_now()
        table = cast(Table, Account.__table__)
        locked = session.execute(
            select(
                table.c.id,
                table.c.next_check_at,
                table.c.status,
                table.c.credentials_version,
                table.c.consecutive_failures,
                table.c.credentials_expire_at,
                table.c["metadata"],
            )
            .where(table.c.id.in_(list(probes)))
            .order_by(table.c.id)
            .with_for_update()
        ).all()
        current = [row for row in locked if row[1] == batch.lease]
        open_codes = _open_codes(session, (row[0] for row in current))
        outcomes = [
            p.outcome
            for row in current
            if isinstance(p := probes[row[0]], Probe) and p.credentials_version == row[3]
        ]
        assessment = incidents.assess(session, batch.provider, outcomes, self.recent, now)
        counts: dict[str, int] = defaultdict(int)
        unchanged: list[dict[str, Any]] = []
        for account_id, _, status, version, failures, expires_at, meta in current:
            probe = probes[account_id]
            outcome = probe.outcome if isinstance(probe, Probe) else None
            if (
                isinstance(outcome, CheckResult)
                and isinstance(probe, Probe)
                and probe.credentials_version == version
                and status == AccountStatus.CONNECTED
                and failures == 0
                and not open_codes[account_id]
                and {**meta, **outcome.metadata} == meta
            ):
                due = self.cadence.due(
                    status, 0, expires_at, Verdict.RECORDED, outcome, now, self.rng
                )
                unchanged.append({"b_id": account_id, "b_checked": now, "b_due": due})
                verdict = Verdict.RECORDED
            else:
                account = session.get_one(Account, account_id)  # locked above
                verdict = self._apply(session, account, probe, assessment, open_codes[account_id])
                account.next_check_at = self.cadence.next_check(
                    account, verdict, outcome, now, self.rng
                )
            counts[verdict.value] += 1
            report.passed += isinstance(outcome, CheckResult) and verdict is Verdict.RECORDED
        if unchanged:
            session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    last_checked_at=bindparam("b_checked"),
                    next_check_at=bindparam("b_due"),
                    updated_at=table.c.updated_at,  # nothing about the account changed
                ),
                unchanged,
            )
        if assessment.incident is not None:
            incidents.count_failures(session, assessment.incident, counts[Verdict.INCIDENT.value])
            report.incident = str(assessment.incident.id)
        report.checked = len(current)
        report.verdicts = dict(counts)
        return report

    def _apply(
        self,
        session: Session,
        account: Account,
        probe: Probe | BaseException,
        assessment: Assessment,
        open_codes: set[str],
    ) -> Verdict:
        if account.status == DISCONNECTED:
            return Verdict.GONE
        if isinstance(probe, BaseException):
            log.error("check_crashed", account_id=str(account.id), error=repr(probe))
            return Verdict.CRASHED
        if probe.credentials_version != account.credentials_version:
            return Verdict.STALE
        outcome = probe.outcome
        if isinstance(outcome, ProviderError) and outcome.temporary:
            if assessment.incident is not None and incidents.is_outage(outcome):
                self._inconclusive(account)
                return Verdict.INCIDENT
            if account.status == AccountStatus.ERROR or self._hold(account, assessment):
                # An account that needs a person stays in error: a provider hiccup changes
                # nothing about that.
                self._inconclusive(account)
                return Verdict.HELD
        apply_outcome(session, account, outcome, "check", open_codes=open_codes)
        return Verdict.RECORDED

    def _hold(self, account: Account, assessment: Assessment) -> bool:
        if account.status not in (AccountStatus.CONNECTED, AccountStatus.PENDING):
            return False  # already degraded: each further failure is counted on its error
        failures = account.consecutive_failures + 1
        if failures < self.cadence.confirm_after:
            return True
        return assessment.suspect and failures < self.cadence.hold_limit

    @staticmethod
    def _inconclusive(account: Account) -> None:
        account.last_checked_at = utc_now()
        account.consecutive_failures += 1


def _open_codes(session: Session, account_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
    codes: dict[uuid.UUID, set[str]] = defaultdict(set)
    ids = list(account_ids)
    if ids:
        for account_id, code in session.execute(
            select(AccountError.account_id, AccountError.code).where(
                AccountError.account_id.in_(ids), AccountError.resolved_at.is_(None)
            )
        ):
            codes[account_id].add(code)
    return codes
