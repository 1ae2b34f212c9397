"""Fixtures shared by every tier. Integration and end-to-end tests use the real PostgreSQL and
Redis; where one is missing they are skipped with a reason naming it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from connectors import Connectors, ConnectorSettings
from connectors.fortnox import FortnoxSettings
from connectors.http import HttpLayer, RetryPolicy
from connectors.shopify import ShopifySettings
from connectors.stripe import StripeSettings
from models import Base, Database
from models.migrate import upgrade
from tests import services
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from tests.simulators.shopify import ShopifySimulator
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps
from worker.vault import Vault

TIERS = {"integration": "integration", "e2e": "e2e"}

pytest_plugins = [
    "tests.fixtures.connectors",
    "tests.fixtures.ingest",
    "tests.fixtures.checks",
    "tests.fixtures.hubspot",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for folder, marker in TIERS.items():
            if folder in parts:
                item.add_marker(getattr(pytest.mark, marker))
        if "integration" in parts or "e2e" in parts:
            problem = services.postgres_problem()
            if problem is None and "e2e" in parts:
                problem = services.redis_problem()
            if problem:
                item.add_marker(pytest.mark.skip(reason=problem))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    problem = services.postgres_problem()
    if problem:
        pytest.skip(problem)
    url = services.create_database()
    upgrade(url)
    yield url
    services.drop_database(url)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The run's database, emptied after each test so every test starts clean."""
    database = Database(database_url)
    yield database
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    database.dispose()


@pytest.fixture(scope="session")
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def vault(encryption_key: str) -> Vault:
    return Vault([encryption_key])


@pytest.fixture(scope="session")
def stripe_sim() -> Iterator[StripeSimulator]:
    sim = StripeSimulator()
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(autouse=True)
def _reset_simulators(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "stripe_sim" in request.fixturenames:
        sim = request.getfixturevalue("stripe_sim")
        sim.script.clear()
    for name in ("shopify_sim", "fortnox_sim", "hubspot_sim"):
        if name in request.fixturenames:
            request.getfixturevalue(name).reset()


FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, max_total_wait=2.0)


@pytest.fixture
def connector_settings(
    stripe_sim: StripeSimulator,
    shopify_sim: ShopifySimulator,
    fortnox_sim: FortnoxSimulator,
    hubspot_sim: HubSpotSimulator,
) -> ConnectorSettings:
    from pydantic import SecretStr

    from tests.fixtures.hubspot import sim_settings as hubspot_settings

    return ConnectorSettings(
        stripe=StripeSettings(
            api_base_url=stripe_sim.url,
            connect_base_url=stripe_sim.url,
            platform_key=SecretStr(stripe_sim.platform_key),
            connect_client_id=stripe_sim.client_id,
        ),
        shopify=ShopifySettings(
            base_url=shopify_sim.url + "/{shop}",
            client_id=shopify_sim.client_id,
            client_secret=SecretStr(shopify_sim.client_secret),
        ),
        fortnox=FortnoxSettings(
            api_base_url=fortnox_sim.url,
            auth_base_url=fortnox_sim.url,
            client_id=fortnox_sim.client_id,
            client_secret=SecretStr(fortnox_sim.client_secret),
            # Fortnox's 429 names no wait; a short one keeps tests from pausing 5 s.
            rate_limited_wait=0.05,
        ),
        hubspot=hubspot_settings(hubspot_sim),
    )


@pytest.fixture
def connectors(connector_settings: ConnectorSettings) -> Iterator[Connectors]:
    registry = Connectors(connector_settings, HttpLayer(timeout=2.0, retry=FAST_RETRY))
    yield registry
    registry.close()


@pytest.fixture
def deps(db: Database, vault: Vault, connectors: Connectors) -> Deps:
    return Deps(db=db, vault=vault, connectors=connectors)


os.environ.setdefault("CONNECTIONS_LOG_FORMAT", "json")
