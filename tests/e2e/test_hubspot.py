"""HubSpot with real processes: an account added by OAuth code through a job on a real worker, a
signed batch of webhook events through the real ingest processed into `provider.event`s on the
stream (a repeated event once, a retry a duplicate, an unknown portal `unroutable`), and checks
that refresh on a rejected token and see an uninstall."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import select

from models import Account, Database, InboundEvent
from tests.e2e import harness
from tests.fixtures.hubspot import PUBLIC_BASE_URL
from tests.simulators.hubspot import HubSpotSimulator

ADMIN = {"user_id": "u-admin", "role": "admin"}
REDIRECT = "https://app.standout.test/connect/hubspot/callback"
ROUTE = "/webhooks/hubspot"


@pytest.fixture(scope="module")
def hubspot_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture
def env(
    e2e_env: dict[str, str], hubspot_redis: int, hubspot_sim: HubSpotSimulator
) -> Iterator[dict[str, str]]:
    url = harness.redis_url(hubspot_redis)
    yield {
        **e2e_env,
        "CONNECTIONS_BROKER_URL": url,
        "CONNECTIONS_RESULT_BACKEND": url,
        "CONNECTIONS_EVENTS_REDIS_URL": url,
        "CONNECTIONS_JOB_CREDENTIALS": "accept",
        "CONNECTIONS_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "CONNECTIONS_HUBSPOT_API_BASE_URL": hubspot_sim.url,
        "CONNECTIONS_HUBSPOT_AUTH_BASE_URL": hubspot_sim.url,
        "CONNECTIONS_HUBSPOT_CLIENT_ID": hubspot_sim.client_id,
        "CONNECTIONS_HUBSPOT_CLIENT_SECRET": hubspot_sim.client_secret,
    }
    redis.Redis.from_url(url).flushdb()
    hubspot_sim.reset()


@pytest.fixture
def running(
    env: dict[str, str], log_dir: Path, db: Database
) -> Iterator[tuple[Celery, str, list[harness.Process]]]:
    """A worker on every queue and an ingest, stopped before the test's database is emptied."""
    name = f"hubspot-{uuid.uuid4().hex[:6]}"
    worker = harness.start_worker(env, log_dir, f"{name}-worker")
    try:
        ingest, url = harness.start_ingest(env, log_dir, name=f"{name}-ingest")
    except BaseException:
        worker.stop()
        raise
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    yield client, url, [worker, ingest]
    for process in (ingest, worker):
        process.stop()


def add_by_code(client: Celery, sim: HubSpotSimulator) -> tuple[str, int]:
    portal = sim.add_portal()
    result = harness.send_and_wait(
        client,
        "accounts.add",
        {
            "org_id": "org-hubspot",
            "actor": ADMIN,
            "type": "hubspot",
            "name": "CRM",
            "credentials": {"code": sim.issue_code(portal, REDIRECT), "redirect_uri": REDIRECT},
            "request_id": f"hubspot-add-{portal.id}",
        },
    )
    assert result["status"] == "succeeded", result
    assert result["account"]["status"] == "connected"
    return result["account"]["id"], portal.id


def account_row(db: Database, account_id: str) -> Account:
    with db.unit_of_work() as session:
        account = session.get(Account, uuid.UUID(account_id))
        assert account is not None
        session.expunge(account)
    return account


def test_added_by_code_then_a_batch_of_events_reaches_the_stream(
    running: tuple[Celery, str, list[harness.Process]],
    env: dict[str, str],
    db: Database,
    hubspot_sim: HubSpotSimulator,
) -> None:
    client, url, processes = running
    account_id, portal = add_by_code(client, hubspot_sim)
    account = account_row(db, account_id)
    assert account.connection["portal_id"] == str(portal)
    assert account.meta["currency"] == "SEK"
    stream = redis.Redis.from_url(env["CONNECTIONS_EVENTS_REDIS_URL"])
    stream.xgroup_create("connections:events", "workflows", id="0", mkstream=True)

    created = hubspot_sim.event(portal, "contact.creation")
    changed = hubspot_sim.event(
        portal, "contact.propertyChange", propertyName="email", propertyValue="a@example.com"
    )
    stranger = hubspot_sim.event(999_999_999, "deal.creation")  # no account has this portal
    answer = hubspot_sim.send_webhooks(
        url + ROUTE, [created, changed, created, stranger], signed_url=PUBLIC_BASE_URL + ROUTE
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["accepted"], body["duplicates"]) == ("accepted", 3, 0)
    assert len(set(body["event_ids"])) == 3

    # HubSpot's retry of an event differs only in attemptNumber: the same event.
    again = hubspot_sim.send_webhooks(
        url + ROUTE, [{**created, "attemptNumber": 1}], signed_url=PUBLIC_BASE_URL + ROUTE
    )
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["event_ids"] == body["event_ids"][:1]

    def published() -> list[dict[str, Any]]:
        read: Any = stream.xreadgroup("workflows", "c1", {"connections:events": ">"}, count=100)
        for _, entries in read:
            for _, fields in entries:
                seen.append(json.loads(fields[b"event"]))
        mine = [e for e in seen if e["account_id"] == account_id and e["type"] == "provider.event"]
        assert sorted(e["data"]["topic"] for e in mine) == [
            "contact.creation",
            "contact.propertyChange",
        ]
        return mine

    seen: list[dict[str, Any]] = []
    events = harness.eventually(published, timeout=30)
    by_topic = {e["data"]["topic"]: e for e in events}
    assert by_topic["contact.propertyChange"]["data"]["payload"]["propertyValue"] == "a@example.com"

    def stranger_kept() -> None:
        with db.unit_of_work() as session:
            statuses = dict(
                session.execute(
                    select(InboundEvent.route_key, InboundEvent.status).where(
                        InboundEvent.provider == "hubspot"
                    )
                ).all()
            )
        assert statuses.get("999999999") == "unroutable"

    harness.eventually(stranger_kept, timeout=30)
    with db.unit_of_work() as session:
        rows = session.scalars(select(InboundEvent.id).where(InboundEvent.provider == "hubspot"))
        assert len(rows.all()) == 3  # one row per distinct event, the retry none
    for process in processes:
        assert hubspot_sim.client_secret not in process.output()


def test_checks_refresh_a_rejected_token_and_see_an_uninstall(
    running: tuple[Celery, str, list[harness.Process]],
    db: Database,
    hubspot_sim: HubSpotSimulator,
) -> None:
    client, _, processes = running
    account_id, portal_id = add_by_code(client, hubspot_sim)
    before = account_row(db, account_id).credentials_version

    hubspot_sim.reject_next_valid_token()  # "a 401 is not proof"
    checked = harness.send_and_wait(client, "accounts.check", {"account_id": account_id})
    assert checked["passed"] is True, checked
    assert hubspot_sim.refresh_calls == 1
    assert account_row(db, account_id).credentials_version == before + 1

    hubspot_sim.uninstall(hubspot_sim.portals[portal_id])
    checked = harness.send_and_wait(client, "accounts.check", {"account_id": account_id})
    assert checked["error_code"] == "connection_revoked", checked
    assert account_row(db, account_id).status == "disconnected"
    for process in processes:
        assert hubspot_sim.client_secret not in process.output()
