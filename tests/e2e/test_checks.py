"""Scheduled checks with real processes: beats and prefork workers over real Redis, on a database
of their own, against a Stripe simulator that remembers when each key was checked. Interval 10 s,
so the lease is 5 s and beat ticks every second."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, text, update

from models import Account, AccountError, Base, Database, StatusChange, utc_now
from models.migrate import upgrade
from tests import services
from tests.e2e import harness
from tests.fixtures.checks import CheckedStripe, insert_stripe_accounts
from worker.service.checks.cadence import Cadence
from worker.service.checks.schedule import claim_due, place_new
from worker.vault import Vault

INTERVAL = 10.0
CADENCE = Cadence(interval=INTERVAL)
TICK = 1.0


@pytest.fixture(scope="module")
def checks_db() -> Iterator[Database]:
    url = services.create_database()
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
    services.drop_database(url)


@pytest.fixture(scope="module")
def checks_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture
def env(
    e2e_env: dict[str, str],
    checks_db: Database,
    checks_redis: int,
    stripe_checks: CheckedStripe,
) -> Iterator[dict[str, str]]:
    broker = harness.redis_url(checks_redis)
    yield {
        **e2e_env,
        "CONNECTIONS_DATABASE_URL": checks_db.url,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_STRIPE_API_BASE_URL": stripe_checks.url,
        "CONNECTIONS_CHECK_INTERVAL_SECONDS": str(int(INTERVAL)),
    }
    redis.Redis.from_url(broker).flushdb()
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    engine: Engine = checks_db.engine
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def processes() -> Iterator[list[harness.Process]]:
    started: list[harness.Process] = []
    yield started
    for process in started:
        process.stop()


def start(
    env: dict[str, str],
    log_dir: Path,
    started: list[harness.Process],
    name: str,
    *,
    beat: bool = False,
    concurrency: int = 2,
) -> harness.Process:
    process = harness.start_worker(
        env, log_dir, f"{name}-{uuid.uuid4().hex[:6]}", concurrency=concurrency, beat=beat
    )
    started.append(process)
    return process


def spread(db: Database) -> None:
    with db.unit_of_work() as session:
        place_new(session, CADENCE, utc_now(), random.Random())


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def test_two_beats_and_three_workers_check_each_account_once_per_interval(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    checks_db: Database,
    encryption_key: str,
    stripe_checks: CheckedStripe,
) -> None:
    made = insert_stripe_accounts(checks_db, Vault([encryption_key]), stripe_checks, 40)
    spread(checks_db)
    start(env, log_dir, processes, "beat-a", beat=True)
    start(env, log_dir, processes, "beat-b", beat=True)
    start(env, log_dir, processes, "plain")
    began = time.time()
    time.sleep(3 * INTERVAL + 2)
    ended = time.time()

    for _, key in made:
        times = [t for t in stripe_checks.times(key) if t <= ended]
        # Every account checked in every interval...
        assert len(times) >= 3, (key[-6:], times)
        assert times[0] - began <= INTERVAL + 2 * TICK
        assert ended - times[-1] <= INTERVAL + 2 * TICK
        # ...and only once: no two checks closer than the interval less its jitter.
        for gap in gaps(times):
            assert INTERVAL * (1 - CADENCE.jitter) - 0.5 <= gap <= INTERVAL + 2 * TICK + 1, (
                key[-6:],
                gaps(times),
            )
    with checks_db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(StatusChange)) == 0
        assert session.scalar(select(func.count()).select_from(AccountError)) == 0
        assert set(session.scalars(select(Account.status))) == {"connected"}


def test_a_flushed_broker_delays_lost_checks_by_no_more_than_the_lease_and_a_tick(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    checks_db: Database,
    encryption_key: str,
    stripe_checks: CheckedStripe,
) -> None:
    made = insert_stripe_accounts(checks_db, Vault([encryption_key]), stripe_checks, 30)
    keys = {account_id: key for account_id, key in made}
    spread(checks_db)
    start(env, log_dir, processes, "beat", beat=True)
    start(env, log_dir, processes, "plain")
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    time.sleep(INTERVAL)  # running normally

    # Mid-run: the workers stop taking checks, beat goes on ticking into the queue, and a claim
    # is made and queued as a tick would; then the broker is emptied.
    client.control.cancel_consumer("checks", reply=True, timeout=5)
    time.sleep(3)
    with checks_db.unit_of_work() as session:
        batches = claim_due(session, CADENCE, utc_now(), limit=1000, batch_size=5)
    claimed_at = time.time()
    for batch in batches:
        client.send_task("checks.batch", kwargs=batch.message(), queue="checks")
    lost = {i for b in batches for i in b.account_ids}
    assert lost, "nothing was due during the pause"
    broker = redis.Redis.from_url(env["CONNECTIONS_BROKER_URL"])
    assert broker.llen("checks") > 0
    broker.flushdb()
    client.control.add_consumer("checks", reply=True, timeout=5)
    lease = CADENCE.lease.total_seconds()
    time.sleep(lease + 3 * TICK + 3)

    for account_id in lost:
        after = [t for t in stripe_checks.times(keys[account_id]) if t > claimed_at]
        # Not before the lease ran out (the claim held), and soon after it.
        assert after, f"{account_id} was never checked after the flush"
        assert lease - 0.5 <= after[0] - claimed_at <= lease + 2 * TICK + 2.5, after[0] - claimed_at
    for _, key in made:
        for gap in gaps(stripe_checks.times(key)):
            assert gap >= INTERVAL * (1 - CADENCE.jitter) - 0.5, gaps(stripe_checks.times(key))
    worker_logs = "".join(p.output() for p in processes)
    assert "Traceback" not in worker_logs


def test_a_worker_killed_mid_batch_leaves_no_check_undone_and_no_change_twice(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    checks_db: Database,
    encryption_key: str,
    stripe_checks: CheckedStripe,
) -> None:
    # Keys rolled: every check must record connected -> error, exactly once per account.
    made = insert_stripe_accounts(
        checks_db,
        Vault([encryption_key]),
        stripe_checks,
        20,
        rolled=True,
        next_check_at=utc_now() - timedelta(seconds=1),
    )
    stripe_checks.script.latency = 6.0  # the first batch is still in flight when we kill
    doomed = start(env, log_dir, processes, "doomed", beat=True, concurrency=1)
    harness.eventually(lambda: _assert(any(stripe_checks.times(k) for _, k in made)), timeout=30)
    survivor = start(env, log_dir, processes, "survivor", beat=True, concurrency=1)
    with checks_db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(StatusChange)) == 0
    doomed.kill()
    killed_at = utc_now()
    stripe_checks.script.latency = 0.2

    def all_checked() -> None:
        with checks_db.unit_of_work() as session:
            rows = session.execute(select(Account.status, Account.last_checked_at)).all()
        assert all(status == "error" for status, _ in rows), rows
        assert all(last is not None and last > killed_at for _, last in rows)

    harness.eventually(all_checked, timeout=INTERVAL + 5)
    assert utc_now() - killed_at <= timedelta(seconds=INTERVAL + 5)
    time.sleep(2 * TICK)  # a duplicate would land now
    with checks_db.unit_of_work() as session:
        per_account = session.execute(
            select(StatusChange.account_id, func.count()).group_by(StatusChange.account_id)
        ).all()
        assert sorted(n for _, n in per_account) == [1] * len(made)
        occurrences = session.scalars(select(AccountError.occurrences)).all()
        assert sorted(occurrences) == [1] * len(made)
    assert survivor.alive()
    # Leave the survivor nothing more to do before it is stopped.
    with checks_db.unit_of_work() as session:
        session.execute(update(Account).values(next_check_at=None))


def _assert(condition: bool) -> None:
    assert condition
