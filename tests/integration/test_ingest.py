"""The ingest endpoint on a real server over the real PostgreSQL: 200 only after the row is
committed, refusals store nothing, duplicates are free, and an outage answers 503."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import httpx
from sqlalchemy import func, select

from connectors.shopify import ShopifySettings
from connectors.stripe import StripeSettings, stripe_header
from models import Account, Database, InboundEvent, OutboxEvent
from tests.fixtures.ingest import (
    SHOPIFY_PREVIOUS_SECRET,
    STRIPE_SECRETS,
    IngestApp,
    TcpProxy,
    ingest_settings,
    make_account,
    serve_ingest,
    shopify_delivery,
    stripe_delivery,
    stripe_event,
    webhook_secrets,
)
from tests.integration.test_inbox import effects_of
from worker.service import inbox
from worker.service.deps import Deps
from worker.vault import Vault


def stored(db: Database) -> list[InboundEvent]:
    with db.unit_of_work() as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.received_at)))


def post(url: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10)


def test_shopify_event_is_stored_then_queued(db: Database, ingest_app: IngestApp) -> None:
    body, headers = shopify_delivery(
        {"id": 1}, "app/uninstalled", "Acme.myshopify.com", event_id="ev-1"
    )
    answer = post(ingest_app.url, "/webhooks/shopify", body, headers)
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    rows = stored(db)
    assert len(rows) == 1
    row = rows[0]
    assert str(row.id) == answer.json()["event_id"]
    assert (row.provider, row.provider_event_id, row.topic) == (
        "shopify",
        "ev-1",
        "app/uninstalled",
    )
    assert row.route_key == "acme.myshopify.com"
    assert row.status == "received"
    assert row.payload == {"id": 1}
    deadline = time.monotonic() + 5
    while not ingest_app.queued and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ingest_app.queued == [row.id]

    again = post(ingest_app.url, "/webhooks/shopify", body, headers)
    assert again.json() == {"status": "duplicate", "event_id": str(row.id)}
    assert len(stored(db)) == 1


def test_previous_shopify_secret_and_any_stripe_secret(db: Database, ingest_app: IngestApp) -> None:
    body, headers = shopify_delivery(
        {"id": 2}, "shop/update", "a.myshopify.com", secret=SHOPIFY_PREVIOUS_SECRET
    )
    assert post(ingest_app.url, "/webhooks/shopify", body, headers).status_code == 200
    for secret in STRIPE_SECRETS:
        body, headers = stripe_delivery(stripe_event("account.updated"), secret=secret)
        assert post(ingest_app.url, "/webhooks/stripe", body, headers).status_code == 200
    assert len(stored(db)) == 3


def test_ten_concurrent_deliveries_one_row_one_effect(
    db: Database, vault: Vault, ingest_app: IngestApp
) -> None:
    account = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_tenx"}
    )
    event = stripe_event("account.application.deauthorized", account="acct_tenx")
    body, headers = stripe_delivery(event)

    async def deliver() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ingest_app.url, timeout=10) as client:
            return await asyncio.gather(
                *[client.post("/webhooks/stripe", content=body, headers=headers) for _ in range(10)]
            )

    answers = asyncio.run(deliver())
    assert [a.status_code for a in answers] == [200] * 10
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * 9
    assert len({a.json()["event_id"] for a in answers}) == 1
    rows = stored(db)
    assert len(rows) == 1

    time.sleep(0.2)
    for _ in range(3):  # queued once, but a redelivery of the message changes nothing
        inbox.process_events(db, [rows[0].id, *ingest_app.queued])
    effects = effects_of(db, account.id)
    assert effects["provider.event"] == 1
    assert effects["account.status_changed"] == 1
    assert effects["account.error_opened"] == 1


def test_refused_deliveries_store_nothing(db: Database, ingest_app: IngestApp) -> None:
    event = stripe_event("account.updated", account="acct_x")
    good_body, good_headers = stripe_delivery(event)
    tampered = good_body.replace(b"account.updated", b"account.updatex")
    old_body, old_headers = stripe_delivery(event, timestamp=int(time.time()) - 301)
    wrong_body, wrong_headers = stripe_delivery(event, secret="whsec_notoursnotours00000")
    shop_body, shop_headers = shopify_delivery({"id": 1}, "shop/update", "a.myshopify.com")
    cases = [
        ("/webhooks/stripe", tampered, good_headers),
        ("/webhooks/stripe", old_body, old_headers),
        ("/webhooks/stripe", wrong_body, wrong_headers),
        ("/webhooks/stripe", good_body, {"Content-Type": "application/json"}),
        ("/webhooks/shopify", shop_body + b" ", shop_headers),
        ("/webhooks/shopify", shop_body, {**shop_headers, "X-Shopify-Hmac-Sha256": ""}),
        ("/webhooks/shopify", shop_body, {**shop_headers, "X-Shopify-Hmac-Sha256": "AAAA"}),
    ]
    for path, body, headers in cases:
        answer = post(ingest_app.url, path, body, headers)
        assert answer.status_code == 401, (path, answer.text)
        assert "whsec" not in answer.text
    assert stored(db) == []
    assert ingest_app.queued == []


def test_no_secret_configured_refuses_even_good_signatures(
    database_url: str, db: Database, deps: Deps
) -> None:
    nothing = webhook_secrets(
        shopify=ShopifySettings(client_secret=None, previous_client_secret=None),
        stripe=StripeSettings(webhook_secret=None),
    )
    server, app = serve_ingest(ingest_settings(database_url), deps, nothing)
    try:
        body, headers = stripe_delivery(stripe_event("account.updated"))
        assert post(app.url, "/webhooks/stripe", body, headers).status_code == 401
        body, headers = shopify_delivery({"id": 1}, "shop/update", "a.myshopify.com")
        assert post(app.url, "/webhooks/shopify", body, headers).status_code == 401
    finally:
        server.stop()
    assert stored(db) == []


def test_too_large_malformed_and_unknown_paths(db: Database, ingest_app: IngestApp) -> None:
    big = json.dumps({"id": "evt_big", "type": "x", "pad": "a" * (1024 * 1024)}).encode()
    _, headers = stripe_delivery(stripe_event("x"))
    assert post(ingest_app.url, "/webhooks/stripe", big, headers).status_code == 413

    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"a" * 65536

    streamed = httpx.post(
        f"{ingest_app.url}/webhooks/shopify", content=chunks(), headers=headers, timeout=10
    )
    assert streamed.status_code == 413

    body = b'{"object": "event"}'
    headers = {"Stripe-Signature": stripe_header(STRIPE_SECRETS[0], body)}
    answer = post(ingest_app.url, "/webhooks/stripe", body, headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == "malformed"

    shop_body, shop_headers = shopify_delivery({"id": 1}, "shop/update", "a.myshopify.com")
    del shop_headers["X-Shopify-Topic"]
    assert post(ingest_app.url, "/webhooks/shopify", shop_body, shop_headers).status_code == 400

    assert post(ingest_app.url, "/webhooks/paypal", body, headers).status_code == 404
    missing = f"/webhooks/stripe/{uuid.uuid4()}"
    assert post(ingest_app.url, missing, body, headers).status_code == 404
    assert post(ingest_app.url, "/webhooks/stripe/not-a-uuid", body, headers).status_code == 404
    assert stored(db) == []


def test_per_account_stripe_endpoint(db: Database, vault: Vault, ingest_app: IngestApp) -> None:
    own_secret = "whsec_accountown00000000000"
    account = make_account(
        db,
        vault,
        "stripe",
        connection={"mode": "api_key", "key_last4": "abcd"},
        credentials={"api_key": "sk_test_" + "a" * 24, "webhook_secret": own_secret},
    )
    bare = make_account(db, vault, "stripe", credentials={"api_key": "sk_test_" + "b" * 24})
    shop = make_account(db, vault, "shopify", connection={"shop_domain": "s.myshopify.com"})
    event = stripe_event("account.updated")
    body, headers = stripe_delivery(event, secret=own_secret)
    path = f"/webhooks/stripe/{account.id}"
    answer = post(ingest_app.url, path, body, headers)
    assert answer.status_code == 200, answer.text
    # The platform secret does not open another account's endpoint, nor does the account's
    # secret open the platform endpoint.
    platform_body, platform_headers = stripe_delivery(stripe_event("account.updated"))
    assert post(ingest_app.url, path, platform_body, platform_headers).status_code == 401
    assert post(ingest_app.url, "/webhooks/stripe", body, headers).status_code == 401
    # An account without a webhook secret refuses everything; a non-Stripe account is unknown.
    assert post(ingest_app.url, f"/webhooks/stripe/{bare.id}", body, headers).status_code == 401
    assert post(ingest_app.url, f"/webhooks/stripe/{shop.id}", body, headers).status_code == 404
    rows = stored(db)
    assert len(rows) == 1
    assert rows[0].account_id == account.id

    # The account's secret is rolled: the cached one fails, the stored one is read again.
    rolled = "whsec_accountrolled000000000"
    with db.unit_of_work() as session:
        current = session.get(Account, account.id)
        assert current is not None
        current.credentials = vault.encrypt(
            {"api_key": "sk_test_" + "a" * 24, "webhook_secret": rolled}
        )
    time.sleep(1.1)
    body, headers = stripe_delivery(stripe_event("account.updated"), secret=rolled)
    assert post(ingest_app.url, path, body, headers).status_code == 200


def test_store_unavailable_answers_503_then_accepts_the_retry(
    db: Database, proxied_ingest: tuple[IngestApp, TcpProxy]
) -> None:
    app, proxy = proxied_ingest
    body, headers = stripe_delivery(stripe_event("account.updated", account="acct_1"))
    assert post(app.url, "/webhooks/stripe", body, headers).status_code == 200

    proxy.cut()
    retry_body, retry_headers = stripe_delivery(stripe_event("account.updated", account="acct_2"))
    for _ in range(3):
        answer = post(app.url, "/webhooks/stripe", retry_body, retry_headers)
        assert answer.status_code == 503
        assert answer.json()["error"] == "unavailable"
    assert len(stored(db)) == 1

    proxy.restore()
    answer = post(app.url, "/webhooks/stripe", retry_body, retry_headers)
    assert answer.status_code == 200
    assert answer.json()["status"] == "accepted"
    assert len(stored(db)) == 2


def test_group_commit_shares_transactions(db: Database, ingest_app: IngestApp) -> None:
    deliveries = [stripe_delivery(stripe_event("customer.created")) for _ in range(120)]

    async def deliver() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=ingest_app.url, timeout=20, limits=limits) as client:
            return await asyncio.gather(
                *[client.post("/webhooks/stripe", content=b, headers=h) for b, h in deliveries]
            )

    answers = asyncio.run(deliver())
    assert {a.status_code for a in answers} == {200}
    with db.unit_of_work() as session:
        rows = session.scalar(select(func.count()).select_from(InboundEvent))
        # Rows of one transaction share its start time: fewer distinct times than rows.
        commits = session.scalar(select(func.count(func.distinct(InboundEvent.received_at))))
    assert rows == 120
    assert commits is not None
    assert commits < 120
    with db.unit_of_work() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_a_row_the_database_refuses_fails_alone(db: Database, ingest_app: IngestApp) -> None:
    # Valid for Python's JSON parser, refused by PostgreSQL's: a lone surrogate escape.
    refused = b'{"id": "evt_surrogate", "type": "customer.updated", "name": "\\ud800"}'
    bad = (refused, {"Stripe-Signature": stripe_header(STRIPE_SECRETS[0], refused)})
    good = [stripe_delivery(stripe_event("customer.created")) for _ in range(20)]

    async def deliver() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=ingest_app.url, timeout=10) as client:
            return await asyncio.gather(
                *[client.post("/webhooks/stripe", content=b, headers=h) for b, h in [bad, *good]]
            )

    answers = asyncio.run(deliver())
    assert answers[0].status_code == 400
    assert [a.status_code for a in answers[1:]] == [200] * 20
    assert len(stored(db)) == 20


def test_webhook_paths_take_only_post_and_the_rest_is_served_behind_them(
    db: Database, ingest_app: IngestApp
) -> None:
    """The webhook endpoints are a plain ASGI app in front of the health and read routes."""
    got = httpx.get(f"{ingest_app.url}/webhooks/shopify", timeout=10)
    assert got.status_code == 405
    assert got.headers["allow"] == "POST"
    body, headers = stripe_delivery(stripe_event("invoice.paid"))
    nested = f"/webhooks/stripe/{uuid.uuid4()}/extra"
    assert post(ingest_app.url, nested, body, headers).status_code == 404
    assert post(ingest_app.url, "/webhooks/", body, headers).status_code == 404
    assert httpx.get(f"{ingest_app.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{ingest_app.url}/metrics", timeout=10).status_code == 200
    assert stored(db) == []
    answer = post(ingest_app.url, "/webhooks/stripe", body, headers)
    assert (answer.status_code, answer.headers["content-type"]) == (200, "application/json")
    assert answer.json()["status"] == "accepted"
