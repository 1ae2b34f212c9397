"""The Fortnox topics listener against the stream simulator and the real PostgreSQL: tenants from
the accounts' tokens, events into the inbox with their offsets, reconnection that resumes from
the stored offsets, refused tokens as account errors, and tokens sent again after a refresh."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models import Account, AccountError, Database, InboundEvent, utc_now
from tests.fixtures.ingest import make_account
from tests.simulators.fortnox_ws import FortnoxStreamSimulator
from worker.fortnox_stream import FortnoxListener, ListenerOptions
from worker.service import inbox
from worker.service.deps import Deps
from worker.vault import Vault

SECRET = "fortnox-client-secret-0000"


def fortnox_credentials(token: str) -> dict[str, Any]:
    expires = (utc_now() + timedelta(hours=1)).isoformat()
    return {"access_token": token, "refresh_token": "refresh-" + token, "expires_at": expires}


def wait_for(probe: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Running:
    """A listener on its own event loop in a thread, stopped like SIGTERM stops the process."""

    def __init__(self, listener: FortnoxListener) -> None:
        self.listener = listener
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self.listener.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout=15)
        assert not self.thread.is_alive()
        assert self.error is None


@pytest.fixture
def sim() -> Iterator[FortnoxStreamSimulator]:
    simulator = FortnoxStreamSimulator(SECRET).start()
    yield simulator
    simulator.stop()


def options(sim: FortnoxStreamSimulator, **overrides: Any) -> ListenerOptions:
    values: dict[str, Any] = {
        "url": sim.url,
        "client_secret": SECRET,
        "topics": ["invoices", "customers"],
        "tenants_every": 0.3,
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
    }
    values.update(overrides)
    return ListenerOptions(**values)


def inbox_rows(db: Database) -> list[InboundEvent]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(InboundEvent).where(InboundEvent.provider == "fortnox")))


def test_listener_stores_events_and_resumes_after_a_drop(
    db: Database, vault: Vault, deps: Deps, sim: FortnoxStreamSimulator
) -> None:
    alpha = make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-alpha"))
    beta = make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-beta"))
    dead = make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-dead"))
    tenant_a = sim.add_tenant("tok-alpha")
    tenant_b = sim.add_tenant("tok-beta")
    queued: list[uuid.UUID] = []
    running = Running(FortnoxListener(deps, options(sim), queued.extend))
    try:
        wait_for(lambda: bool(sim.sent("subscribe-v1")))
        [add] = sim.sent("add-tenants-v1")
        assert add["clientSecret"] == SECRET
        assert sorted(add["accessTokens"]) == ["tok-alpha", "tok-beta", "tok-dead"]
        with db.unit_of_work() as session:
            meta = {a.id: a.meta for a in session.scalars(select(Account))}
            refused = session.scalars(
                select(AccountError).where(AccountError.account_id == dead.id)
            ).one()
            dead_status = session.get(Account, dead.id)
        assert meta[alpha.id]["fortnox_tenant_id"] == str(tenant_a)
        assert meta[beta.id]["fortnox_tenant_id"] == str(tenant_b)
        assert refused.code == "credentials_invalid"
        assert dead_status is not None
        assert dead_status.status == "error"

        offsets = [sim.publish("invoices", tenant_a) for _ in range(12)]
        offsets += [sim.publish("customers", tenant_b, "customer-updated-v2") for _ in range(8)]
        wait_for(lambda: len(inbox_rows(db)) == 20)

        sim.drop_connections()
        late = [sim.publish("invoices", tenant_b) for _ in range(10)]
        wait_for(lambda: len(inbox_rows(db)) == 30)
        assert sim.connections_made >= 2
        resumed = sim.sent("add-topics-v1")[-1]["topics"]
        assert {"topic": "invoices", "offset": str(offsets[11])} in resumed
        assert {"topic": "customers", "offset": str(offsets[-1])} in resumed
    finally:
        running.stop()

    rows = inbox_rows(db)
    expected = {f"invoices:{o}" for o in offsets[:12] + late} | {
        f"customers:{o}" for o in offsets[12:]
    }
    assert {r.provider_event_id for r in rows} == expected
    assert sorted(queued) == sorted(r.id for r in rows)  # each queued once, duplicates never
    with db.unit_of_work() as session:
        assert inbox.stream_offsets(session, "fortnox") == {
            "invoices": late[-1],
            "customers": offsets[-1],
        }
    report = inbox.process_events(db, [r.id for r in rows])
    assert report.processed == 30
    assert report.unroutable == 0


def test_tokens_are_sent_again_after_a_refresh(
    db: Database, vault: Vault, deps: Deps, sim: FortnoxStreamSimulator
) -> None:
    account = make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-old"))
    tenant = sim.add_tenant("tok-old")
    sim.add_tenant("tok-new", tenant)
    running = Running(FortnoxListener(deps, options(sim), lambda ids: None))
    try:
        wait_for(lambda: bool(sim.sent("subscribe-v1")))
        with db.unit_of_work() as session:
            stored = session.get(Account, account.id)
            assert stored is not None
            stored.credentials = vault.encrypt(fortnox_credentials("tok-new"))
            stored.credentials_version += 1
        wait_for(lambda: any("tok-new" in c["accessTokens"] for c in sim.sent("add-tenants-v1")))
        sim.publish("invoices", tenant)
        wait_for(lambda: len(inbox_rows(db)) == 1)
    finally:
        running.stop()
    assert sim.connections_made == 1


def test_a_refused_client_secret_backs_off_and_stores_nothing(
    db: Database, vault: Vault, deps: Deps, sim: FortnoxStreamSimulator
) -> None:
    make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-1"))
    sim.add_tenant("tok-1")
    running = Running(FortnoxListener(deps, options(sim, client_secret="wrong"), lambda ids: None))
    try:
        wait_for(lambda: sim.connections_made >= 3)
    finally:
        running.stop()
    assert sim.sent("subscribe-v1") == []
    assert inbox_rows(db) == []
