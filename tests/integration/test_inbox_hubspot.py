"""HubSpot's webhook endpoint on a real ingest server over the real PostgreSQL: a signed batch is
stored as one row per distinct event, in one transaction, and answered with their ids; the same
events again are duplicates; processing routes each by its portal (an unknown one is kept
`unroutable`); a refused request stores nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connectors.hubspot import HubSpotSettings, event_identity, v1_signature
from models import Database, InboundEvent
from tests.fixtures.hubspot import PUBLIC_BASE_URL
from tests.fixtures.ingest import (
    IngestApp,
    ingest_settings,
    make_account,
    serve_ingest,
    webhook_secrets,
)
from tests.integration.test_inbox import effects_of
from tests.simulators.hubspot import webhook_headers
from worker.service import inbox
from worker.service.deps import Deps
from worker.vault import Vault

SECRET = "test-hubspot-client-secret-0001"
ROUTE = "/webhooks/hubspot"
PORTAL, OTHER_PORTAL, UNKNOWN_PORTAL = 62515, 88001, 99999


def serve(database_url: str, deps: Deps, **hubspot: Any) -> tuple[Any, IngestApp]:
    settings = ingest_settings(database_url, public_base_url=hubspot.pop("public", PUBLIC_BASE_URL))
    config = HubSpotSettings(**{"client_secret": SecretStr(SECRET), **hubspot})
    return serve_ingest(settings, deps, webhook_secrets(hubspot=config))


@pytest.fixture
def hubspot_ingest(database_url: str, deps: Deps) -> Iterator[IngestApp]:
    """The ingest with HubSpot's test secret, reached by HubSpot at PUBLIC_BASE_URL."""
    server, app = serve(database_url, deps)
    yield app
    server.stop()


def event(portal: int, event_id: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 4001,
        "portalId": portal,
        "appId": 54321,
        "occurredAt": 1_800_000_000_000 + event_id,
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
        "objectId": 100 + event_id,
        "changeSource": "CRM",
        **fields,
    }


def deliver(
    app: IngestApp,
    events: list[dict[str, Any]] | None = None,
    *,
    body: bytes | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    **signing: Any,
) -> httpx.Response:
    """POST to the ingest as HubSpot does, signed (v3) over the public URL it was given."""
    content = body if body is not None else json.dumps(events).encode()
    suffix = f"?{query}" if query else ""
    signed = headers or webhook_headers(
        signing.pop("secret", SECRET),
        signing.pop("signed_url", PUBLIC_BASE_URL + ROUTE + suffix),
        content,
        signing.pop("timestamp", None),
    )
    return httpx.post(app.url + ROUTE + suffix, content=content, headers=signed, timeout=10)


def queued_ids(app: IngestApp, expected: int) -> list[uuid.UUID]:
    deadline = time.monotonic() + 5
    while len(app.queued) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return sorted(app.queued, key=str)


def rows(db: Database) -> list[InboundEvent]:
    with db.unit_of_work() as session:
        found = session.scalars(select(InboundEvent).where(InboundEvent.provider == "hubspot"))
        return list(found)


def test_a_batch_is_stored_one_row_per_event_and_answered_with_their_ids(
    db: Database, hubspot_ingest: IngestApp
) -> None:
    # HubSpot's eventId is not unique: a and b share one and are still two events.
    a, b, c = event(PORTAL, 1), event(PORTAL, 1, objectId=555), event(UNKNOWN_PORTAL, 2)
    answer = deliver(hubspot_ingest, [a, b, a, c])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["status"], body["accepted"], body["duplicates"]) == ("accepted", 3, 0)
    assert len(body["event_ids"]) == 3

    stored = {str(r.id): r for r in rows(db)}
    assert set(stored) == set(body["event_ids"])
    by_event = {r.provider_event_id: r for r in stored.values()}
    assert set(by_event) == {
        event_identity(a, str(PORTAL)),
        event_identity(b, str(PORTAL)),
        event_identity(c, str(UNKNOWN_PORTAL)),
    }
    first = by_event[event_identity(a, str(PORTAL))]
    assert (first.topic, first.route_key, first.status) == (
        "contact.creation",
        str(PORTAL),
        "received",
    )
    assert first.payload == a
    assert first.occurred_at is not None
    assert first.occurred_at.timestamp() == pytest.approx(1_800_000_000.001)
    assert [str(i) for i in queued_ids(hubspot_ingest, 3)] == sorted(body["event_ids"])


def test_the_same_events_again_are_duplicates(db: Database, hubspot_ingest: IngestApp) -> None:
    a, b = event(PORTAL, 1), event(PORTAL, 2)
    first = deliver(hubspot_ingest, [a, b]).json()
    again = deliver(hubspot_ingest, [a, b])
    assert again.status_code == 200
    assert again.json() == {
        "status": "duplicate",
        "event_ids": first["event_ids"],
        "accepted": 0,
        "duplicates": 2,
    }
    # HubSpot's retry differs in attemptNumber only: still the same event, beside a new one.
    retried = deliver(hubspot_ingest, [{**a, "attemptNumber": 3}, event(PORTAL, 3)]).json()
    assert (retried["status"], retried["accepted"], retried["duplicates"]) == ("accepted", 1, 1)
    assert retried["event_ids"][0] == first["event_ids"][0]
    assert len(rows(db)) == 3
    assert len(queued_ids(hubspot_ingest, 3)) == 3  # each row queued once


def test_processing_routes_each_event_by_its_portal(
    db: Database, vault: Vault, hubspot_ingest: IngestApp
) -> None:
    mine = make_account(db, vault, "hubspot", connection={"portal_id": str(PORTAL)})
    other = make_account(
        db, vault, "hubspot", org_id="org-other", connection={"portal_id": str(OTHER_PORTAL)}
    )
    # A Shopify account whose shop happens to be called like the portal must not match.
    make_account(db, vault, "shopify", connection={"shop_domain": str(UNKNOWN_PORTAL)})
    batch = [
        event(PORTAL, 1),
        event(PORTAL, 2, subscriptionType="contact.propertyChange", propertyName="email"),
        event(OTHER_PORTAL, 3, subscriptionType="deal.creation"),
        event(UNKNOWN_PORTAL, 4),
    ]
    assert deliver(hubspot_ingest, batch).json()["accepted"] == 4

    report = inbox.process_events(db, [r.id for r in rows(db)])
    assert (report.processed, report.unroutable) == (3, 1)
    by_portal: dict[str, list[InboundEvent]] = {}
    for row in rows(db):
        by_portal.setdefault(row.route_key or "", []).append(row)
    assert {r.account_id for r in by_portal[str(PORTAL)]} == {mine.id}
    assert {r.account_id for r in by_portal[str(OTHER_PORTAL)]} == {other.id}
    assert [(r.status, r.account_id) for r in by_portal[str(UNKNOWN_PORTAL)]] == [
        ("unroutable", None)
    ]
    assert effects_of(db, mine.id) == {"provider.event": 2}  # recorded: no state changes
    assert effects_of(db, other.id) == {"provider.event": 1}


@pytest.mark.parametrize(
    "problem",
    [
        "another_secret",
        "tampered_body",
        "signed_for_another_url",
        "query_added",
        "five_minutes_old",
        "from_the_future",
        "unsigned",
        "v1_tampered",
    ],
)
def test_a_refused_delivery_is_401_and_stores_nothing(
    db: Database, hubspot_ingest: IngestApp, problem: str
) -> None:
    events = [event(PORTAL, 1)]
    body = json.dumps(events).encode()
    now_ms = int(time.time() * 1000)
    if problem == "another_secret":
        answer = deliver(hubspot_ingest, events, secret="not-the-app-secret")
    elif problem == "tampered_body":
        headers = webhook_headers(SECRET, PUBLIC_BASE_URL + ROUTE, body)
        answer = deliver(hubspot_ingest, body=body.replace(b"62515", b"62516"), headers=headers)
    elif problem == "signed_for_another_url":
        answer = deliver(hubspot_ingest, events, signed_url=hubspot_ingest.url + ROUTE)
    elif problem == "query_added":
        headers = webhook_headers(SECRET, PUBLIC_BASE_URL + ROUTE, body)
        answer = deliver(hubspot_ingest, body=body, headers=headers, query="x=1")
    elif problem == "five_minutes_old":
        answer = deliver(hubspot_ingest, events, timestamp=now_ms - 300_500)
    elif problem == "from_the_future":
        answer = deliver(hubspot_ingest, events, timestamp=now_ms + 120_000)
    elif problem == "unsigned":
        answer = deliver(hubspot_ingest, body=body, headers={"Content-Type": "application/json"})
    else:
        signature = v1_signature(SECRET, body)
        headers = {"X-HubSpot-Signature": signature, "X-HubSpot-Signature-Version": "v1"}
        answer = deliver(hubspot_ingest, body=body + b" ", headers=headers)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "unauthorized"
    assert rows(db) == []
    assert hubspot_ingest.queued == []


def test_the_query_is_signed_decoded_as_hubspot_signs_it(
    db: Database, hubspot_ingest: IngestApp
) -> None:
    answer = deliver(hubspot_ingest, [event(PORTAL, 1)], query="from=hubspot%3Aeu1&x=%20y")
    assert answer.status_code == 200, answer.text
    assert len(rows(db)) == 1


def test_a_v1_signature_is_still_accepted(db: Database, hubspot_ingest: IngestApp) -> None:
    body = json.dumps([event(PORTAL, 1)]).encode()
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": v1_signature(SECRET, body),
        "X-HubSpot-Signature-Version": "v1",
    }
    assert deliver(hubspot_ingest, body=body, headers=headers).status_code == 200
    assert len(rows(db)) == 1


@pytest.mark.parametrize("missing", ["client_secret", "public_base_url"])
def test_without_a_secret_or_public_url_everything_is_refused(
    db: Database, database_url: str, deps: Deps, missing: str
) -> None:
    options: dict[str, Any] = {"client_secret": None} if missing == "client_secret" else {}
    if missing == "public_base_url":
        options["public"] = None
    server, app = serve(database_url, deps, **options)
    try:
        answer = deliver(app, [event(PORTAL, 1)])
    finally:
        server.stop()
    assert answer.status_code == 401
    assert rows(db) == []


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"eventId": 1}', "not a JSON array"),
        (b"[]", "no events"),
        (json.dumps([event(PORTAL, i) for i in range(101)]).encode(), "at most 100"),
        (json.dumps([event(PORTAL, 1), {"portalId": PORTAL}]).encode(), "subscriptionType"),
    ],
)
def test_a_malformed_batch_after_a_good_signature_is_400(
    db: Database, hubspot_ingest: IngestApp, body: bytes, words: str
) -> None:
    answer = deliver(hubspot_ingest, body=body, headers=None)
    assert answer.status_code == 400
    assert words in answer.json()["message"]
    assert rows(db) == []


def test_a_batch_is_stored_in_one_transaction(db: Database, hubspot_ingest: IngestApp) -> None:
    """PostgreSQL refuses a lone surrogate in JSON: the good events of the same request are not
    stored either, so HubSpot's retry of the request finds none of it half-stored."""
    batch = [event(PORTAL, 1), event(PORTAL, 2), event(PORTAL, 3, propertyValue="\ud800")]
    answer = deliver(hubspot_ingest, batch)
    assert answer.status_code == 400, answer.text
    assert rows(db) == []
    # Without the event it refuses, the same request is stored whole.
    assert deliver(hubspot_ingest, batch[:2]).json()["accepted"] == 2
