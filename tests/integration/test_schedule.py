"""Claiming due accounts on PostgreSQL: concurrent claimers never share an account, the lease moves
the next check, new accounts are spread over the interval, disconnected ones are never
scheduled, batches are sent only after the claim commits, and one tick claims at a time."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from models import Account, AccountStatus, utc_now
from tests.fixtures.checks import CADENCE, CheckedStripe, insert_stripe_accounts
from worker.service.checks.schedule import CLAIM_LOCK, Batch, claim_due, place_new, tick
from worker.service.deps import Deps
from worker.vault import Vault


def next_checks(deps: Deps) -> dict[uuid.UUID, object]:
    with deps.db.unit_of_work() as session:
        return {r[0]: r[1] for r in session.execute(select(Account.id, Account.next_check_at))}


def test_concurrent_claimers_split_the_due_accounts_without_overlap(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    due = utc_now() - timedelta(seconds=5)
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 300, next_check_at=due)
    claimed: list[list[Batch]] = []
    start = threading.Barrier(4)

    def claimer() -> None:
        start.wait()
        for _ in range(5):
            with deps.db.unit_of_work() as session:
                claimed.append(claim_due(session, CADENCE, utc_now(), limit=40, batch_size=25))

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    ids = [i for batches in claimed for b in batches for i in b.account_ids]
    assert len(ids) == len(set(ids))  # nobody claimed an account twice
    assert set(ids) == {a for a, _ in made}
    assert all(len(b.account_ids) <= 25 for batches in claimed for b in batches)
    leased = next_checks(deps)
    now = utc_now()
    for batches in claimed:
        for batch in batches:
            assert batch.lease > now
            assert all(leased[i] == batch.lease for i in batch.account_ids)
    with deps.db.unit_of_work() as session:
        assert claim_due(session, CADENCE, utc_now(), limit=1000, batch_size=25) == []


def test_new_accounts_are_spread_over_the_interval_and_disconnected_never_scheduled(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    fresh = insert_stripe_accounts(deps.db, vault, stripe_checks, 100)
    [(gone, _)] = insert_stripe_accounts(
        deps.db, vault, stripe_checks, 1, status=AccountStatus.DISCONNECTED
    )
    now = utc_now()
    with deps.db.unit_of_work() as session:
        assert place_new(session, CADENCE, now, random.Random(3)) == 100
    scheduled = next_checks(deps)
    assert scheduled[gone] is None
    delays = [(scheduled[a] - now).total_seconds() for a, _ in fresh]  # type: ignore[operator]
    assert all(0 <= d <= CADENCE.interval for d in delays)
    # Spread: every sixth of the interval gets some of them.
    assert {int(d // (CADENCE.interval / 6)) for d in delays} == set(range(6))

    # An account disconnected after it was scheduled is dropped from the schedule when due.
    with deps.db.unit_of_work() as session:
        session.execute(
            update(Account)
            .where(Account.id == fresh[0][0])
            .values(status="disconnected", next_check_at=utc_now() - timedelta(seconds=1))
        )
        assert claim_due(session, CADENCE, utc_now(), limit=10, batch_size=10) == []
    assert next_checks(deps)[fresh[0][0]] is None


def test_tick_sends_batches_per_provider_after_commit_and_a_lost_one_is_claimed_again(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    due = utc_now() - timedelta(seconds=1)
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 45, next_check_at=due)
    sent: list[Batch] = []

    def send(batch: Batch) -> None:
        # The claim is committed before anything is sent: another session sees the lease.
        with deps.db.unit_of_work() as session:
            leased = session.get(Account, batch.account_ids[0])
            assert leased is not None
            assert leased.next_check_at == batch.lease
        sent.append(batch)

    assert tick(deps.db, CADENCE, send, chunk=20, batch_size=10) == 45
    assert [len(b.account_ids) for b in sent] == [10, 10, 10, 10, 5]
    assert {i for b in sent for i in b.account_ids} == {a for a, _ in made}
    assert tick(deps.db, CADENCE, send) == 0  # leased: not due again

    # The broker lost every message: once the lease runs out, the next tick claims them again.
    lease_over = sent[0].lease + timedelta(seconds=1)
    from models.clock import set_clock

    set_clock(lambda: lease_over)
    try:
        again: list[Batch] = []
        assert tick(deps.db, CADENCE, again.append) == 45
    finally:
        set_clock(None)
    assert {i for b in again for i in b.account_ids} == {a for a, _ in made}


def test_a_send_that_fails_leaves_the_accounts_to_their_lease(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    due = utc_now() - timedelta(seconds=1)
    insert_stripe_accounts(deps.db, vault, stripe_checks, 3, next_check_at=due)

    def broker_down(_batch: Batch) -> None:
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError):
        tick(deps.db, CADENCE, broker_down)
    # Claimed (the database is the truth) and not due again until the lease ends.
    assert all(v is not None and v > utc_now() for v in next_checks(deps).values())  # type: ignore[operator]


def test_one_tick_claims_at_a_time_and_another_returns_at_once(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    due = utc_now() - timedelta(seconds=1)
    insert_stripe_accounts(deps.db, vault, stripe_checks, 5, next_check_at=due)
    sent: list[Batch] = []
    with deps.db.engine.connect() as other:  # another tick, in the middle of its claims
        other.execute(text("SELECT pg_advisory_lock(:key)"), {"key": CLAIM_LOCK})
        assert tick(deps.db, CADENCE, sent.append) == 0
        assert sent == []
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CLAIM_LOCK})
    assert tick(deps.db, CADENCE, sent.append) == 5
    with deps.db.engine.connect() as other:  # the tick gave the lock back
        assert other.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": CLAIM_LOCK})
        other.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CLAIM_LOCK})
