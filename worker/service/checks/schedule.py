"""Due-based health checks: a tick claims the accounts whose check is due under a lease and sends
them on in batches (checked by `batch.BatchChecker`); each account's next check is set from what
its check found (`cadence.Cadence`)."""

from __future__ import annotations

import contextlib
import functools
import random
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import case, literal, null, select, text, update
from sqlalchemy.orm import Session

from models import Account, AccountStatus, Database, after_commit, utc_now
from worker.service.checks.cadence import Cadence

log = structlog.get_logger(__name__)

DISCONNECTED = AccountStatus.DISCONNECTED.value
CLAIM_LOCK = zlib.crc32(b"checks-claim")  # the advisory lock key of `tick`


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
