"""End-to-end fixtures: a worker process over real Redis, on the run's PostgreSQL database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.e2e import harness
from tests.simulators.stripe import StripeSimulator

SERVICE_TOKEN = "e2e-service-token-0123456789"


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture(scope="session")
def e2e_env(
    database_url: str,
    redis_db: int,
    encryption_key: str,
    stripe_sim: StripeSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """Environment for every child process; other areas' fixtures may extend a copy of it."""
    broker = harness.redis_url(redis_db)
    var_dir = tmp_path_factory.mktemp("var")
    return {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": database_url,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_SERVICE_TOKEN": SERVICE_TOKEN,
        "CONNECTIONS_STRIPE_API_BASE_URL": stripe_sim.url,
        "CONNECTIONS_STRIPE_CONNECT_BASE_URL": stripe_sim.url,
        "CONNECTIONS_STRIPE_PLATFORM_KEY": stripe_sim.platform_key,
        "CONNECTIONS_LOG_FORMAT": "json",
        # These tests send plaintext credentials over Celery, as a trusted sender in dev may;
        # the intake's own tests refuse them.
        "CONNECTIONS_JOB_CREDENTIALS": "accept",
        "CONNECTIONS_VAR_DIR": str(var_dir),
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def worker_process(e2e_env: dict[str, str], log_dir: Path) -> Iterator[harness.Process]:
    process = harness.start_worker(e2e_env, log_dir)
    yield process
    process.stop()


@pytest.fixture(scope="session")
def ingest_server(e2e_env: dict[str, str], log_dir: Path) -> Iterator[str]:
    process, url = harness.start_ingest(e2e_env, log_dir)
    yield url
    process.stop()


@pytest.fixture(scope="session")
def client(e2e_env: dict[str, str]) -> Celery:
    return harness.client_app(
        e2e_env["CONNECTIONS_BROKER_URL"], e2e_env["CONNECTIONS_RESULT_BACKEND"]
    )
