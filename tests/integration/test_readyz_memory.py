"""`/readyz` and a nearly full Redis: a throwaway server with a small `maxmemory` (`noeviction`,
as in compose) filled past the limit makes the ingest not ready while Redis still takes
writes; emptied, it is ready again."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from starlette.applications import Starlette
from starlette.testclient import TestClient

from connectors import Connectors, ConnectorSettings
from models import Database
from tests.fixtures.throwaway_redis import redis_server
from worker.api import health
from worker.service.deps import Deps
from worker.settings import get_settings
from worker.vault import Vault

MAXMEMORY = 32 * 2**20


@pytest.fixture
def small_redis() -> Iterator[str]:
    with redis_server("--maxmemory", str(MAXMEMORY), "--maxmemory-policy", "noeviction") as url:
        yield url


@pytest.fixture
def readyz(
    db: Database, vault: Vault, small_redis: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """The health routes, with the throwaway server as the broker (its ping passes: this test
    is about memory) and the result backend elsewhere."""
    monkeypatch.setenv("CONNECTIONS_BROKER_URL", small_redis)
    monkeypatch.setenv("CONNECTIONS_RESULT_BACKEND", "db+sqlite:///var/results.db")
    monkeypatch.delenv("CONNECTIONS_EVENTS_REDIS_URL", raising=False)
    get_settings.cache_clear()
    deps = Deps(db=db, vault=vault, connectors=Connectors(ConnectorSettings()))
    with TestClient(Starlette(routes=health.routes(deps, lambda: None))) as client:
        yield client
    get_settings.cache_clear()


def used_share(client: redis.Redis) -> float:
    info = client.info("memory")
    return int(info["used_memory"]) / int(info["maxmemory"])


def fill_to(client: redis.Redis, share: float) -> None:
    """Write 256 KB values until Redis uses more than `share` of its maxmemory."""
    n = 0
    while used_share(client) <= share:
        client.set(f"fill:{n}", b"x" * 256 * 1024)
        n += 1


def test_readyz_fails_before_redis_refuses_writes(readyz: TestClient, small_redis: str) -> None:
    client = redis.Redis.from_url(small_redis)
    first = readyz.get("/readyz")
    assert first.status_code == 200, first.json()
    assert first.json()["redis_memory"] == "ok"

    fill_to(client, health.REDIS_MEMORY_LIMIT + 0.02)
    answer = readyz.get("/readyz")

    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "not_ready"
    assert body["database"] == "ok"
    port = small_redis.rsplit(":", 1)[1].split("/")[0]
    assert body["redis_memory"].startswith(f"redis 127.0.0.1:{port} uses 9")
    assert "of maxmemory" in body["redis_memory"]
    # Not ready while Redis still takes writes: the queue can drain what is in flight.
    assert client.set("still-writable", b"y" * 1024)

    client.flushdb()
    assert readyz.get("/readyz").status_code == 200
    client.close()


def test_a_redis_without_maxmemory_is_not_judged(
    db: Database, vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    with redis_server() as url:
        monkeypatch.setenv("CONNECTIONS_BROKER_URL", url)
        monkeypatch.setenv("CONNECTIONS_EVENTS_REDIS_URL", url.replace("/0", "/2"))
        get_settings.cache_clear()
        deps = Deps(db=db, vault=vault, connectors=Connectors(ConnectorSettings()))
        with TestClient(Starlette(routes=health.routes(deps, lambda: None))) as client:
            body = client.get("/readyz").json()
        get_settings.cache_clear()

    assert body["status"] == "ready"
    assert body["redis_memory"] == "ok"
