"""One truth about an outage, with real processes: twelve `accounts.check` jobs sent at once, during
a Stripe outage no incident records yet, to a fresh prefork worker whose child processes have
seen no check before. Each child judges by its own few checks and what the others recorded; the
accounts stay `connected` with no open error, and one incident is recorded, started once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, text

from models import Account, AccountError, Base, Database, OutboxEvent, ProviderIncident
from models.migrate import upgrade
from tests import services
from tests.e2e import harness
from tests.fixtures.checks import CheckedStripe, insert_stripe_accounts
from worker.vault import Vault

JOBS = 12
CHILDREN = 6  # worker processes, each with its own (empty) recent checks


@pytest.fixture(scope="module")
def outage_db() -> Iterator[Database]:
    url = services.create_database()
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()
    services.drop_database(url)


@pytest.fixture(scope="module")
def outage_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture
def env(
    e2e_env: dict[str, str], outage_db: Database, outage_redis: int, stripe_checks: CheckedStripe
) -> dict[str, str]:
    broker = harness.redis_url(outage_redis)
    redis.Redis.from_url(broker).flushdb()
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    engine: Engine = outage_db.engine
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return {
        **e2e_env,
        "CONNECTIONS_DATABASE_URL": outage_db.url,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_STRIPE_API_BASE_URL": stripe_checks.url,
    }


@pytest.fixture
def worker(env: dict[str, str], log_dir: Path) -> Iterator[harness.Process]:
    name = f"outage-{uuid.uuid4().hex[:6]}"
    process = harness.start_worker(env, log_dir, name, concurrency=CHILDREN)
    yield process
    process.stop()


def test_check_jobs_over_fresh_worker_processes_during_an_outage_leave_accounts_connected(
    env: dict[str, str],
    worker: harness.Process,
    outage_db: Database,
    encryption_key: str,
    stripe_checks: CheckedStripe,
) -> None:
    made = insert_stripe_accounts(outage_db, Vault([encryption_key]), stripe_checks, JOBS)
    stripe_checks.outage = 503  # every call answered 503
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])

    sent = [client.send_task("accounts.check", kwargs={"account_id": str(a)}) for a, _ in made]
    results = [r.get(timeout=60) for r in sent]

    for result in results:
        assert result["status"] == "succeeded", result
        assert (result["passed"], result["error_code"]) == (False, "provider_unavailable")
    assert any(r["incident"] for r in results)
    with outage_db.unit_of_work() as session:
        assert set(session.scalars(select(Account.status))) == {"connected"}
        open_errors = select(func.count()).where(AccountError.resolved_at.is_(None))
        assert session.scalar(open_errors) == 0
        [incident] = session.scalars(select(ProviderIncident)).all()
        assert (incident.provider, incident.ended_at) == ("stripe", None)
        assert incident.failed_checks == JOBS
        started = select(func.count()).where(OutboxEvent.type == "provider.incident_started")
        assert session.scalar(started) == 1
    assert worker.alive()
