"""Due-based health checks: a tick claims the accounts whose check is due under a lease and sends
them on in batches (checked by `batches.BatchChecker`), and each account's next check is set from
what its check found (cadence, backoff, token expiry)."""

from __future__ import annotations

import contextlib
import enum
import functools
import random
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import case, literal, null, select, text, update
from sqlalchemy.orm import Session

from connectors import ProviderError
from models import Account, AccountStatus, Database, after_commit, utc_now
from worker.service.checks import CheckOutcome

log = structlog.get_logger(__name__)

DISCONNECTED = AccountStatus.DISCONNECTED.value
CLAIM_LOCK = zlib.crc32(b"checks-claim")  # the advisory lock key of `tick`


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
        Batch(provider, part, lease)
        for provider, ids in sorted(by_provider.items())
        for part in _even_parts(ids, batch_size)
    ]


def _even_parts(ids: list[uuid.UUID], most: int) -> list[tuple[uuid.UUID, ...]]:
    """`ids` in as few parts of at most `most` as can be, of sizes that differ by one at most:
    no small remainder batch that costs a batch's fixed work for a few accounts."""
    count = -(-len(ids) // most)
    size, extra = divmod(len(ids), count) if count else (0, 0)
    parts, start = [], 0
    for n in range(count):
        end = start + size + (n < extra)
        parts.append(tuple(ids[start:end]))
        start = end
    return parts


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
    batch_size: int = 400,
) -> int:
    """One scheduler tick: place new accounts, then claim what is due, a chunk per transaction,
    and send each chunk's batches once it has committed. Returns how many accounts were claimed.

    Safe from any number of beats at once: claims never overlap. A batch that is never sent or
    never finishes costs only a delay: its lease runs out and a later tick claims it again.
    One tick claims at a time: ticks that queued up behind a backlog of batches come due
    together, and a tick that finds another claiming returns at once instead of taking one
    more worker process off the checks.
    """
    with _sole_claimer(db) as sole:
        if not sole:
            return 0
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


@contextlib.contextmanager
def _sole_claimer(db: Database) -> Iterator[bool]:
    """True while this tick is the only one claiming: a PostgreSQL advisory lock on a connection
    of its own, released at the end (or with the connection, if the process dies). Other
    databases allow one writer at a time anyway."""
    if not db.is_postgres:
        yield True
        return
    with db.engine.connect() as conn:
        sole = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": CLAIM_LOCK}))
        conn.commit()  # the lock belongs to the connection, not to a transaction
        try:
            yield sole
        finally:
            if sole:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CLAIM_LOCK})
                conn.commit()
