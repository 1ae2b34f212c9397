"""Connect sessions with real processes: the ingest (`connections ingest`) queues the callback's job
over Redis to a real Celery worker, which exchanges the code at the simulator. An HTTP client
follows the links as a browser would, for every OAuth provider; a reloaded callback makes one
account; a reader cannot start a session; a reconnect keeps its account or is refused with
`identity_mismatch`; a provider's refusal ends the session `rejected`."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from bench.processes import Process, answers, free_port
from models import Account, Base, Database
from tests.e2e import harness
from tests.e2e.conftest import SERVICE_TOKEN
from tests.integration.test_connect_sessions import (
    ADMIN,
    OAUTH_TYPES,
    READER,
    RETURN_PREFIX,
    Api,
    Browser,
    Upstreams,
    assert_nothing_secret,
    landed,
)
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from tests.simulators.shopify import ShopifySimulator
from tests.simulators.stripe import StripeSimulator


@pytest.fixture(scope="module")
def upstreams(
    shopify_sim: ShopifySimulator,
    stripe_sim: StripeSimulator,
    fortnox_sim: FortnoxSimulator,
    hubspot_sim: HubSpotSimulator,
) -> Upstreams:
    return Upstreams(shopify_sim, stripe_sim, fortnox_sim, hubspot_sim)


@pytest.fixture(scope="module")
def connect_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def running(
    e2e_env: dict[str, str],
    connect_redis: int,
    upstreams: Upstreams,
    log_dir: Path,
    store: Database,
) -> Iterator[tuple[Api, list[Process]]]:
    """A worker on every queue and an ingest at PUBLIC_BASE_URL, both configured for every
    simulator; the module's rows are removed once they stop."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    broker = harness.redis_url(connect_redis)
    shopify, stripe, fortnox, hubspot = (
        upstreams.shopify,
        upstreams.stripe,
        upstreams.fortnox,
        upstreams.hubspot,
    )
    env = {
        **e2e_env,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_PUBLIC_BASE_URL": public,
        "CONNECTIONS_CONNECT_RETURN_URLS": RETURN_PREFIX,
        "CONNECTIONS_SHOPIFY_BASE_URL": shopify.url + "/{shop}",
        "CONNECTIONS_SHOPIFY_CLIENT_ID": shopify.client_id,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": shopify.client_secret,
        "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID": stripe.client_id,
        "CONNECTIONS_FORTNOX_API_BASE_URL": fortnox.url,
        "CONNECTIONS_FORTNOX_AUTH_BASE_URL": fortnox.url,
        "CONNECTIONS_FORTNOX_CLIENT_ID": fortnox.client_id,
        "CONNECTIONS_FORTNOX_CLIENT_SECRET": fortnox.client_secret,
        "CONNECTIONS_HUBSPOT_API_BASE_URL": hubspot.url,
        "CONNECTIONS_HUBSPOT_AUTH_BASE_URL": hubspot.url,
        "CONNECTIONS_HUBSPOT_CLIENT_ID": hubspot.client_id,
        "CONNECTIONS_HUBSPOT_CLIENT_SECRET": hubspot.client_secret,
    }
    name = f"connect-{uuid.uuid4().hex[:6]}"
    worker = harness.start_worker(env, log_dir, f"{name}-worker")
    args = [sys.executable, "-m", "worker.cli", "ingest", "--host", "127.0.0.1"]
    ingest = Process(f"{name}-ingest", [*args, "--port", str(port)], env, log_dir)
    processes = [worker, ingest]
    try:
        up = answers(f"{public}/healthz", 30, alive=ingest.alive, accept=lambda s: s == 200)
        assert up, f"ingest did not answer /healthz:\n{ingest.output()[-3000:]}"
        yield Api(public, SERVICE_TOKEN), processes
    finally:
        for process in (ingest, worker):
            process.stop()
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with store.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def org_accounts(store: Database, org_id: str) -> list[Account]:
    with store.unit_of_work() as s:
        found = list(s.scalars(select(Account).where(Account.org_id == org_id)))
        s.expunge_all()
    return found


def finished(api: Api, org_id: str, session_id: str) -> dict[str, Any]:
    """The session once its job has ended on the worker."""

    def ended() -> dict[str, Any]:
        view = api.read(org_id, session_id).json()
        assert view["status"] != "pending", view
        return view

    return harness.eventually(ended, timeout=60)


def connect(
    api: Api, org_id: str, body: dict[str, Any], actor: dict[str, str] = ADMIN
) -> tuple[dict[str, Any], dict[str, str], Browser]:
    """Create a session, authorize at the simulator, come back: (session's final view, the
    return URL's query, the browser)."""
    created = api.create(org_id, {"return_url": RETURN_PREFIX, **body}, actor)
    assert created.status_code == 201, created.text
    session = created.json()
    browser = Browser()
    back = browser.connect(session["authorize_url"])
    if browser.code():  # a refusal comes back without one
        assert_nothing_secret(back, browser.code())
    query = landed(back)
    assert query["session"] == session["id"]
    view = finished(api, org_id, session["id"])
    # The browser was sent back with the outcome, or while the worker was still at it.
    assert query["status"] in (view["status"], "pending")
    return view, query, browser


@pytest.mark.parametrize("type_", OAUTH_TYPES)
def test_a_full_connect_through_the_ingest_and_a_worker(
    type_: str, running: tuple[Api, list[Process]], upstreams: Upstreams, store: Database
) -> None:
    api, processes = running
    org_id = org()
    identity, extra = upstreams.new(type_)
    view, _, browser = connect(api, org_id, {"type": type_, "name": f"E2E {type_}", **extra})
    assert (view["status"], view["reason"]) == ("succeeded", None), view
    (account,) = org_accounts(store, org_id)
    assert (str(account.id), account.status, account.name) == (
        view["account"]["id"],
        "connected",
        f"E2E {type_}",
    )
    for process in processes:
        assert browser.code() not in process.output()


def test_the_callback_reloaded_twice_makes_one_account(
    running: tuple[Api, list[Process]], upstreams: Upstreams, store: Database
) -> None:
    api, _ = running
    org_id = org()
    _, extra = upstreams.new("hubspot")
    view, _, browser = connect(api, org_id, {"type": "hubspot", "name": "CRM", **extra})
    assert view["status"] == "succeeded"
    for _ in range(2):
        again = browser.back()
        assert again.status_code == 400
        assert "already used" in again.text
    assert len(org_accounts(store, org_id)) == 1
    assert api.read(org_id, view["id"]).json() == view


def test_a_reader_cannot_create_a_session(running: tuple[Api, list[Process]]) -> None:
    api, _ = running
    answer = api.create(org(), {"type": "stripe", "name": "x"}, READER)
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


def test_reconnects_keep_their_account_or_are_refused_for_another_identity(
    running: tuple[Api, list[Process]], upstreams: Upstreams, store: Database
) -> None:
    api, _ = running
    org_id = org()
    identity, extra = upstreams.new("fortnox")
    added, _, _ = connect(api, org_id, {"type": "fortnox", "name": "Books", **extra})
    account_id = added["account"]["id"]
    (before,) = org_accounts(store, org_id)

    upstreams.again("fortnox", identity)
    same, _, _ = connect(api, org_id, {"type": "fortnox", "account_id": account_id})
    assert (same["status"], same["account"]["id"]) == ("succeeded", account_id), same
    (after,) = org_accounts(store, org_id)
    assert after.credentials_version == before.credentials_version + 1
    assert after.status == "connected"

    upstreams.new("fortnox")  # the next authorization grants another company
    other, query, _ = connect(api, org_id, {"type": "fortnox", "account_id": account_id})
    assert (other["status"], other["reason"]) == ("rejected", "identity_mismatch"), other
    (unchanged,) = org_accounts(store, org_id)
    assert (unchanged.credentials, unchanged.credentials_version, unchanged.status) == (
        after.credentials,
        after.credentials_version,
        after.status,
    )


def test_the_providers_refusal_ends_the_session_rejected(
    running: tuple[Api, list[Process]], upstreams: Upstreams, store: Database
) -> None:
    api, _ = running
    org_id = org()
    _, extra = upstreams.new("stripe")
    upstreams.deny("stripe")
    view, query, _ = connect(api, org_id, {"type": "stripe", "name": "Payments", **extra})
    assert query["status"] == "rejected"
    assert (view["status"], view["reason"], view["job_id"]) == (
        "rejected",
        "authorization_failed",
        None,
    )
    assert "denied" in view["message"]
    assert org_accounts(store, org_id) == []
