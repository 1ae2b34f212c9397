"""The Fortnox topics listener against the stream simulator and the real PostgreSQL: tenants from
the accounts' tokens, events into the inbox with their offsets, reconnection that resumes from
the stored offsets, refused tokens as account errors, and tokens sent again after a refresh.
Credential changes reach it through PostgreSQL NOTIFY, after commit only, within moments."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from connectors.fortnox import FortnoxSettings
from models import Account, AccountError, Database, InboundEvent, utc_now
from tests.fixtures.ingest import make_account
from tests.integration import jobs
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.fortnox_ws import FortnoxStreamSimulator
from worker.service import inbox, notify
from worker.service.deps import Deps
from worker.streams.fortnox import FortnoxListener, ListenerOptions, options_from
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


# -- credential changes heard at once ------------------------------------------------------------

REDIRECT = "https://app.standout.test/oauth/fortnox"


def listen_connection(db: Database) -> psycopg.Connection[Any]:
    url = notify.listen_url(db)
    assert url is not None
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(f"LISTEN {notify.CHANNEL}")
    return conn


def test_credentials_changed_is_delivered_after_commit_and_never_after_rollback(
    db: Database,
) -> None:
    committed, rolled_back = uuid.uuid4(), uuid.uuid4()
    with listen_connection(db) as conn:
        with db.unit_of_work() as session:
            notify.credentials_changed(session, "fortnox", committed)
            assert list(conn.notifies(timeout=0.3)) == []  # not before the commit
        [heard] = list(conn.notifies(timeout=5, stop_after=1))
        assert (heard.channel, heard.payload) == (notify.CHANNEL, f"fortnox:{committed}")

        def failing_change() -> None:
            with db.unit_of_work() as session:
                notify.credentials_changed(session, "fortnox", rolled_back)
                raise RuntimeError("the change fails")

        with pytest.raises(RuntimeError):
            failing_change()
        assert list(conn.notifies(timeout=1.0)) == []


@pytest.fixture
def linked_sim(fortnox_sim: FortnoxSimulator) -> Iterator[FortnoxStreamSimulator]:
    """A stream simulator that knows the tokens the OAuth simulator issues."""
    simulator = FortnoxStreamSimulator(SECRET, issuer=fortnox_sim.tenant_of).start()
    yield simulator
    simulator.stop()


def connect_company(deps: Deps, fortnox_sim: FortnoxSimulator) -> tuple[str, float]:
    """Add a Fortnox account the way the job does; returns its id and when the job was done."""
    tenant = fortnox_sim.add_tenant("Nyss Ansluten AB")
    code = fortnox_sim.issue_code(tenant, REDIRECT)
    result = jobs.add(deps, type="fortnox", credentials={"code": code, "redirect_uri": REDIRECT})
    assert result["status"] == "succeeded", result
    return result["account"]["id"], time.monotonic()


def tokens_sent(sim: FortnoxStreamSimulator) -> set[str]:
    return {t for c in sim.sent("add-tenants-v1") for t in c["accessTokens"]}


def access_token(deps: Deps, account_id: str) -> str:
    with deps.db.unit_of_work() as session:
        account = session.get(Account, uuid.UUID(account_id))
        assert account is not None
        return str(deps.vault.decrypt(account.credentials)["access_token"])


def tenant_id(db: Database, account_id: str) -> str | None:
    with db.unit_of_work() as session:
        account = session.get(Account, uuid.UUID(account_id))
        return None if account is None else account.meta.get("fortnox_tenant_id")


def test_an_account_connected_while_listening_streams_at_once(
    deps: Deps, fortnox_sim: FortnoxSimulator, linked_sim: FortnoxStreamSimulator
) -> None:
    queued: list[uuid.UUID] = []
    running = Running(FortnoxListener(deps, options(linked_sim, tenants_every=60), queued.extend))
    try:
        wait_for(lambda: bool(linked_sim.sent("subscribe-v1")))
        account_id, done = connect_company(deps, fortnox_sim)
        token = access_token(deps, account_id)
        wait_for(lambda: token in tokens_sent(linked_sim), timeout=5)
        wait_for(lambda: tenant_id(deps.db, account_id) is not None, timeout=5)
        subscribed = time.monotonic() - done
        linked_sim.publish("invoices", int(tenant_id(deps.db, account_id) or 0))
        wait_for(lambda: len(inbox_rows(deps.db)) == 1, timeout=5)
        stored = time.monotonic() - done
        print(f"subscribed {subscribed:.3f} s after the add job; event stored {stored:.3f} s")
    finally:
        running.stop()
    assert subscribed < 2.0  # not the 60 s re-read
    assert len(queued) == 1


def test_a_refresh_by_a_check_sends_the_new_token_at_once(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    linked_sim: FortnoxStreamSimulator,
    check_account: Any,
) -> None:
    account_id, _ = connect_company(deps, fortnox_sim)
    old = access_token(deps, account_id)
    running = Running(FortnoxListener(deps, options(linked_sim, tenants_every=60), lambda i: None))
    try:
        wait_for(lambda: bool(linked_sim.sent("subscribe-v1")))
        assert old in tokens_sent(linked_sim)
        with deps.db.unit_of_work() as session:  # due for a refresh, and nobody told
            account = session.get(Account, uuid.UUID(account_id))
            assert account is not None
            credentials = deps.vault.decrypt(account.credentials)
            credentials["expires_at"] = utc_now().isoformat()
            account.credentials = deps.vault.encrypt(credentials)
        assert check_account(deps, account_id)["passed"] is True
        new = access_token(deps, account_id)
        assert new != old
        refreshed = time.monotonic()
        wait_for(lambda: new in tokens_sent(linked_sim), timeout=5)
        assert time.monotonic() - refreshed < 2.0
    finally:
        running.stop()
    assert fortnox_sim.refresh_calls == 1  # the listener used the check's tokens


def test_a_removed_account_is_unsubscribed_at_once(
    deps: Deps, fortnox_sim: FortnoxSimulator, linked_sim: FortnoxStreamSimulator
) -> None:
    account_id, _ = connect_company(deps, fortnox_sim)
    running = Running(FortnoxListener(deps, options(linked_sim, tenants_every=60), lambda i: None))
    try:
        wait_for(lambda: tenant_id(deps.db, account_id) is not None)
        tenant = int(tenant_id(deps.db, account_id) or 0)
        assert jobs.remove(deps, account_id=account_id)["status"] == "succeeded"
        removed = time.monotonic()
        wait_for(lambda: bool(linked_sim.sent("remove-tenants-v1")), timeout=5)
        assert time.monotonic() - removed < 2.0
    finally:
        running.stop()
    assert linked_sim.sent("remove-tenants-v1") == [
        {"command": "remove-tenants-v1", "tenantIds": [tenant]}
    ]


def test_a_lost_listen_connection_is_made_again_and_everything_read(
    db: Database, vault: Vault, deps: Deps, sim: FortnoxStreamSimulator
) -> None:
    account = make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-before"))
    tenant = sim.add_tenant("tok-before")
    sim.add_tenant("tok-after", tenant)
    running = Running(FortnoxListener(deps, options(sim, tenants_every=60), lambda i: None))
    try:
        wait_for(lambda: bool(sim.sent("subscribe-v1")))
        with db.unit_of_work() as session:  # a change whose notification is lost
            stored = session.get(Account, account.id)
            assert stored is not None
            stored.credentials = vault.encrypt(fortnox_credentials("tok-after"))
        with db.engine.begin() as conn:
            ended = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                    "application_name = 'connections-listen' AND datname = current_database()"
                )
            ).all()
        assert ended == [(True,)]
        wait_for(lambda: "tok-after" in tokens_sent(sim), timeout=10)
    finally:
        running.stop()
    assert sim.connections_made == 1  # the stream itself was never dropped


def test_without_notifications_the_tenants_are_polled(
    db: Database, vault: Vault, deps: Deps, sim: FortnoxStreamSimulator
) -> None:
    running = Running(
        FortnoxListener(deps, options(sim, tenants_every=0.3, listen_changes=False), lambda i: None)
    )
    try:
        wait_for(lambda: bool(sim.sent("subscribe-v1")))
        make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-polled"))
        sim.add_tenant("tok-polled")
        wait_for(lambda: "tok-polled" in tokens_sent(sim), timeout=5)
    finally:
        running.stop()
    with db.engine.connect() as conn:
        listening = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE "
                "application_name = 'connections-listen' AND datname = current_database()"
            )
        ).scalar()
    assert listening == 0


def test_on_postgresql_the_listener_hears_changes_and_rereads_every_minute(db: Database) -> None:
    options = options_from(FortnoxSettings(client_secret=SecretStr(SECRET)), db)
    assert (options.tenants_every, options.listen_changes) == (60.0, True)
    assert notify.listen_url(db) is not None
