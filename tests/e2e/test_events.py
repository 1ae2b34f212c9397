"""Provider events with real processes: the ingest server and prefork workers over real Redis,
the Fortnox listener against the stream simulator. Nothing accepted is lost when Redis is
flushed or a worker or the listener is killed, and each event has exactly one effect; a Fortnox
company connected while the listener runs has its events published within seconds."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis
from celery import Celery
from sqlalchemy import func, select

from models import Account, Database, InboundEvent, OutboxEvent, StatusChange, utc_now
from tests.e2e import harness
from tests.fixtures.ingest import (
    SHOPIFY_SECRET,
    STRIPE_SECRETS,
    make_account,
    shopify_delivery,
    stripe_delivery,
    stripe_event,
)
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.fortnox_ws import FortnoxStreamSimulator
from worker.vault import Vault

FORTNOX_SECRET = "fortnox-e2e-client-secret-000"


@pytest.fixture(scope="module")
def events_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture(scope="module")
def fortnox_http() -> Iterator[FortnoxSimulator]:
    sim = FortnoxSimulator(client_id="e2e-fortnox-client", client_secret=FORTNOX_SECRET)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def fortnox_ws(fortnox_http: FortnoxSimulator) -> Iterator[FortnoxStreamSimulator]:
    # Knows the tokens the OAuth simulator issues, as Fortnox knows its own.
    sim = FortnoxStreamSimulator(FORTNOX_SECRET, issuer=fortnox_http.tenant_of).start()
    yield sim
    sim.stop()


@pytest.fixture
def fortnox_env(env: dict[str, str], fortnox_http: FortnoxSimulator) -> dict[str, str]:
    """`env` with the Fortnox OAuth and API simulator, so workers can connect companies."""
    return {
        **env,
        "CONNECTIONS_FORTNOX_CLIENT_ID": fortnox_http.client_id,
        "CONNECTIONS_FORTNOX_API_BASE_URL": fortnox_http.url,
        "CONNECTIONS_FORTNOX_AUTH_BASE_URL": fortnox_http.url,
    }


@pytest.fixture
def env(
    e2e_env: dict[str, str], events_redis: int, fortnox_ws: FortnoxStreamSimulator
) -> Iterator[dict[str, str]]:
    url = harness.redis_url(events_redis)
    yield {
        **e2e_env,
        "CONNECTIONS_BROKER_URL": url,
        "CONNECTIONS_RESULT_BACKEND": url,
        "CONNECTIONS_EVENTS_REDIS_URL": url,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": ",".join(STRIPE_SECRETS),
        "CONNECTIONS_FORTNOX_CLIENT_SECRET": FORTNOX_SECRET,
        "CONNECTIONS_FORTNOX_WS_URL": fortnox_ws.url,
        "CONNECTIONS_FORTNOX_TOPICS": "invoices,customers",
    }
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def processes(db: Database) -> Iterator[list[harness.Process]]:
    """Started processes, stopped before the test's database is emptied."""
    started: list[harness.Process] = []
    yield started
    for process in started:
        process.stop()


def worker(env: dict[str, str], log_dir: Path, started: list[harness.Process], name: str) -> Any:
    process = harness.start_worker(env, log_dir, name, queues="events", concurrency=2)
    started.append(process)
    return process


def ingest(env: dict[str, str], log_dir: Path, started: list[harness.Process]) -> str:
    process, url = harness.start_ingest(env, log_dir, name=f"events-ingest-{uuid.uuid4().hex[:6]}")
    started.append(process)
    return url


def sweep_until_done(client: Celery, db: Database, expected: int, timeout: float = 90.0) -> None:
    """Run the sweeper (as beat does, with no grace) until every event is processed."""

    def done() -> None:
        client.send_task("events.sweep", kwargs={"grace_seconds": 0}, queue="events")
        with db.unit_of_work() as session:
            processed = session.scalar(
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.status == "processed")
            )
        assert processed == expected

    harness.eventually(done, timeout=timeout, interval=2.0)


def effects_per_event(db: Database) -> Counter[str]:
    with db.unit_of_work() as session:
        return Counter(
            session.scalars(
                select(OutboxEvent.data["event_id"].as_string()).where(
                    OutboxEvent.type == "provider.event"
                )
            )
        )


def post_all(url: str, deliveries: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    async def run() -> list[int]:
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as session:
            semaphore = asyncio.Semaphore(50)

            async def one(path: str, body: bytes, headers: dict[str, str]) -> int:
                async with semaphore, session.post(url + path, data=body, headers=headers) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*[one(*d) for d in deliveries])

    return asyncio.run(run())


def test_webhook_changes_the_account_and_reaches_the_stream(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    db: Database,
    vault: Vault,
) -> None:
    account = make_account(db, vault, "shopify", connection={"shop_domain": "e2e.myshopify.com"})
    worker(env, log_dir, processes, "events-worker")
    url = ingest(env, log_dir, processes)
    stream = redis.Redis.from_url(env["CONNECTIONS_EVENTS_REDIS_URL"])
    stream.xgroup_create("connections:events", "workflows", id="0", mkstream=True)

    body, headers = shopify_delivery({"id": 1}, "app/uninstalled", "e2e.myshopify.com")
    answer = httpx.post(f"{url}/webhooks/shopify", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"

    def disconnected() -> None:
        with db.unit_of_work() as session:
            current = session.get(Account, account.id)
            assert current is not None
            assert current.status == "disconnected"

    harness.eventually(disconnected)

    def published() -> list[dict[str, Any]]:
        read = stream.xreadgroup("workflows", "c1", {"connections:events": ">"}, count=50)
        events = [json.loads(f[b"event"]) for _, entries in read for _, f in entries]
        mine = [e for e in events if e["account_id"] == str(account.id)]
        assert [e["type"] for e in mine] == [
            "account.error_opened",
            "account.status_changed",
            "provider.event",
        ]
        return mine

    events = harness.eventually(published, timeout=20)
    assert events[2]["data"]["topic"] == "app/uninstalled"
    assert events[2]["data"]["event_id"] == answer.json()["event_id"]
    for process in processes:
        assert SHOPIFY_SECRET not in process.output()


def test_redis_flushed_mid_run_loses_no_accepted_event(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    db: Database,
    vault: Vault,
) -> None:
    for i in range(10):
        make_account(
            db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": f"acct_f{i}"}
        )
    url = ingest(env, log_dir, processes)
    events = [stripe_event("invoice.paid", account=f"acct_f{i % 10}") for i in range(1000)]
    deliveries = [("/webhooks/stripe", *stripe_delivery(e)) for e in events]

    # The first half is accepted while no worker runs: its messages wait in Redis...
    assert post_all(url, deliveries[:500]) == [200] * 500
    broker = redis.Redis.from_url(env["CONNECTIONS_BROKER_URL"])
    harness.eventually(lambda: _assert(broker.llen("events") > 0))
    broker.flushdb()  # ...and are gone.
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    worker(env, log_dir, processes, "events-worker")
    assert post_all(url, deliveries[500:]) == [200] * 500

    sweep_until_done(client, db, 1000)
    with db.unit_of_work() as session:
        ids = set(session.scalars(select(InboundEvent.provider_event_id)))
    assert ids == {e["id"] for e in events}
    effects = effects_per_event(db)
    assert len(effects) == 1000
    assert set(effects.values()) == {1}


def test_worker_killed_mid_processing_leaves_one_effect_per_event(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    db: Database,
    vault: Vault,
) -> None:
    accounts = [
        make_account(
            db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": f"acct_k{i}"}
        )
        for i in range(300)
    ]
    url = ingest(env, log_dir, processes)
    deliveries = [
        ("/webhooks/stripe", *stripe_delivery(stripe_event("invoice.paid", account=f"acct_k{i}")))
        for i in range(300)
        for _ in range(4)
    ]
    deliveries += [
        (
            "/webhooks/stripe",
            *stripe_delivery(
                stripe_event("account.application.deauthorized", account=f"acct_k{i}")
            ),
        )
        for i in range(300)
    ]
    assert post_all(url, deliveries) == [200] * 1500

    doomed = worker(env, log_dir, processes, "doomed-worker")

    def some_processed() -> None:
        with db.unit_of_work() as session:
            count = session.scalar(
                select(func.count())
                .select_from(InboundEvent)
                .where(InboundEvent.status == "processed")
            )
        assert count is not None
        assert count >= 100

    harness.eventually(some_processed, timeout=60, interval=0.05)
    doomed.kill()  # SIGKILL, the whole prefork group, in the middle of the run
    doomed.proc.wait(timeout=10)
    with db.unit_of_work() as session:
        left = session.scalar(
            select(func.count()).select_from(InboundEvent).where(InboundEvent.status == "received")
        )
    assert left is not None
    assert left > 0, "the worker finished before it was killed; the test proves nothing"

    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    worker(env, log_dir, processes, "second-worker")
    sweep_until_done(client, db, 1500)

    effects = effects_per_event(db)
    assert len(effects) == 1500
    assert set(effects.values()) == {1}
    with db.unit_of_work() as session:
        changes = Counter(session.scalars(select(StatusChange.account_id)))
    assert changes == {a.id: 1 for a in accounts}


def test_fortnox_listener_restarted_mid_stream_misses_and_repeats_nothing(
    env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    db: Database,
    vault: Vault,
    fortnox_ws: FortnoxStreamSimulator,
) -> None:
    expires = (utc_now() + timedelta(hours=2)).isoformat()
    tenants = []
    for i in range(3):
        token = f"tok-e2e-{i}-{uuid.uuid4().hex[:6]}"
        make_account(
            db, vault, "fortnox", credentials={"access_token": token, "expires_at": expires}
        )
        tenants.append(fortnox_ws.add_tenant(token))
    worker(env, log_dir, processes, "events-worker")
    args = [sys.executable, "-m", "worker.cli", "fortnox-stream"]
    first = harness.Process("fortnox-stream-1", args, env, log_dir)
    processes.append(first)
    subscribed_before = len(fortnox_ws.sent("subscribe-v1"))
    harness.eventually(lambda: _assert(len(fortnox_ws.sent("subscribe-v1")) > subscribed_before))

    published: list[str] = []

    def publish() -> None:
        for i in range(400):
            topic = "invoices" if i % 3 else "customers"
            offset = fortnox_ws.publish(topic, tenants[i % 3], entity_id=str(i))
            published.append(f"{topic}:{offset}")
            time.sleep(0.004)

    publisher = threading.Thread(target=publish)
    publisher.start()
    harness.eventually(lambda: _assert(len(published) >= 120), interval=0.02)
    first.kill()  # SIGKILL in the middle of the stream
    first.proc.wait(timeout=10)
    second = harness.Process("fortnox-stream-2", args, env, log_dir)
    processes.append(second)
    publisher.join(timeout=30)

    def all_stored() -> None:
        with db.unit_of_work() as session:
            ids = list(
                session.scalars(
                    select(InboundEvent.provider_event_id).where(InboundEvent.provider == "fortnox")
                )
            )
        assert sorted(ids) == sorted(published)

    harness.eventually(all_stored, timeout=60)
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    sweep_until_done(client, db, 400)
    effects = effects_per_event(db)
    assert len(effects) == 400
    assert set(effects.values()) == {1}
    resumed = [c for c in fortnox_ws.sent("add-topics-v1") if "offset" in c["topics"][0]]
    assert resumed, "the restarted listener did not resume from stored offsets"
    for process in (first, second):
        assert FORTNOX_SECRET not in process.output()


def test_fortnox_company_connected_while_listening_streams_within_5_seconds(
    fortnox_env: dict[str, str],
    log_dir: Path,
    processes: list[harness.Process],
    db: Database,
    fortnox_http: FortnoxSimulator,
    fortnox_ws: FortnoxStreamSimulator,
) -> None:
    env = fortnox_env
    processes.append(harness.start_worker(env, log_dir, "connect-worker", concurrency=2))
    args = [sys.executable, "-m", "worker.cli", "fortnox-stream"]
    subscribed_before = len(fortnox_ws.sent("subscribe-v1"))
    processes.append(harness.Process("fortnox-stream-connect", args, env, log_dir))
    harness.eventually(lambda: _assert(len(fortnox_ws.sent("subscribe-v1")) > subscribed_before))

    tenant = fortnox_http.add_tenant("Nyss Ansluten AB")
    redirect = "https://app.standout.test/oauth/fortnox"
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    result = harness.send_and_wait(
        client,
        "accounts.add",
        {
            "org_id": "org-e2e-fortnox",
            "actor": {"user_id": "u-admin", "role": "admin"},
            "type": "fortnox",
            "name": "Bokföring",
            "credentials": {
                "code": fortnox_http.issue_code(tenant, redirect),
                "redirect_uri": redirect,
            },
        },
    )
    connected = time.monotonic()
    assert result["status"] == "succeeded", result
    account_id = result["account"]["id"]

    # The company's invoices keep changing; the first event after the listener subscribed it
    # must come out as `provider.event`.
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            fortnox_ws.publish("invoices", tenant.id, entity_id=str(time.monotonic_ns()))
            stop.wait(0.1)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    stream = redis.Redis.from_url(env["CONNECTIONS_EVENTS_REDIS_URL"])

    def published() -> dict[str, Any]:
        entries = stream.xrange("connections:events")
        events = [json.loads(fields[b"event"]) for _, fields in entries]
        mine = [
            e for e in events if e["account_id"] == account_id and e["type"] == "provider.event"
        ]
        assert mine
        return mine[0]

    try:
        first = harness.eventually(published, timeout=30, interval=0.05)
        latency = time.monotonic() - connected
    finally:
        stop.set()
        publisher.join(timeout=5)
    print(f"\nfirst provider.event {latency:.2f} s after the add job succeeded")
    assert latency < 5.0
    assert first["data"]["topic"] == "invoices"
    assert first["data"]["payload"]["tenantId"] == tenant.id
    for process in processes:
        assert FORTNOX_SECRET not in process.output()


def _assert(condition: bool) -> None:
    assert condition
