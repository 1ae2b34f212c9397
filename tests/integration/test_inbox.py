"""Processing the inbox over the real PostgreSQL: each provider topic's effect, routing, the
newer-wins rule, unroutable and failed events, replay, the sweeper, and exactly one effect per
event however often and however concurrently it is processed."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update

from connectors.events import ParsedEvent
from connectors.fortnox import parse_fortnox
from connectors.shopify import parse_shopify
from connectors.stripe import parse_stripe
from models import (
    Account,
    AccountError,
    Database,
    InboundEvent,
    IntegrationRef,
    OutboxEvent,
    StatusChange,
    utc_now,
)
from tests.fixtures.ingest import make_account, shopify_delivery, stripe_delivery, stripe_event
from worker.service import inbox, provider_events
from worker.service.outcomes import Rejected
from worker.vault import Vault


def store(db: Database, event: ParsedEvent, account_id: uuid.UUID | None = None) -> uuid.UUID:
    with db.engine.begin() as conn:
        return inbox.store_events(conn, [inbox.Incoming(event, account_id)])[0].id


def shopify(topic: str, shop: str, payload: dict[str, Any], at: str | None = None) -> ParsedEvent:
    body, headers = shopify_delivery(payload, topic, shop, triggered_at=at)
    return parse_shopify(headers, body)


def stripe(type_: str, account: str | None = None, **kwargs: Any) -> ParsedEvent:
    body, _ = stripe_delivery(stripe_event(type_, account=account, **kwargs))
    return parse_stripe(body)


def effects_of(db: Database, account_id: uuid.UUID) -> Counter[str]:
    with db.unit_of_work() as session:
        types = session.scalars(
            select(OutboxEvent.type).where(OutboxEvent.account_id == account_id)
        )
        return Counter(types)


def row(db: Database, event_id: uuid.UUID) -> InboundEvent:
    with db.unit_of_work() as session:
        found = session.get(InboundEvent, event_id)
        assert found is not None
        return found


def account_now(db: Database, account_id: uuid.UUID) -> Account:
    with db.unit_of_work() as session:
        found = session.get(Account, account_id)
        assert found is not None
        return found


def open_errors(db: Database, account_id: uuid.UUID) -> dict[str, AccountError]:
    with db.unit_of_work() as session:
        rows = session.scalars(
            select(AccountError).where(
                AccountError.account_id == account_id, AccountError.resolved_at.is_(None)
            )
        )
        return {e.code: e for e in rows}


def provider_events_of(db: Database, account_id: uuid.UUID) -> list[dict[str, Any]]:
    with db.unit_of_work() as session:
        rows = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.account_id == account_id, OutboxEvent.type == "provider.event")
            .order_by(OutboxEvent.seq)
        )
        return [r.data for r in rows]


def link(db: Database, account: Account, *integration_ids: str) -> None:
    with db.unit_of_work() as session:
        for integration_id in integration_ids:
            session.add(
                IntegrationRef(
                    account_id=account.id,
                    integration_id=integration_id,
                    org_id=account.org_id,
                    name=f"workflow {integration_id}",
                )
            )


def test_shopify_uninstall_disconnects_and_publishes(db: Database, vault: Vault) -> None:
    account = make_account(db, vault, "shopify", connection={"shop_domain": "acme.myshopify.com"})
    link(db, account, "wf-1", "wf-2")
    event_id = store(db, shopify("app/uninstalled", "ACME.myshopify.com", {"id": 9}))

    report = inbox.process_events(db, [event_id])

    assert (report.processed, report.emitted) == (1, 1)
    current = account_now(db, account.id)
    assert current.status == "disconnected"
    error = open_errors(db, account.id)["connection_revoked"]
    assert error.source == "event"
    assert "uninstalled" in error.message
    with db.unit_of_work() as session:
        change = session.scalars(
            select(StatusChange).where(StatusChange.account_id == account.id)
        ).one()
    assert (change.from_status, change.to_status, change.source) == (
        "connected",
        "disconnected",
        "event",
    )
    [published] = provider_events_of(db, account.id)
    assert published["provider"] == "shopify"
    assert published["topic"] == "app/uninstalled"
    assert published["payload"] == {"id": 9}
    assert published["integrations"] == ["wf-1", "wf-2"]
    assert published["applied"] is True
    assert published["event_id"] == str(event_id)
    stored = row(db, event_id)
    assert stored.status == "processed"
    assert stored.account_id == account.id
    assert stored.effect == "status disconnected"
    assert stored.processed_at is not None


def test_shopify_metadata_and_compliance_topics(db: Database, vault: Vault) -> None:
    account = make_account(db, vault, "shopify", connection={"shop_domain": "m.myshopify.com"})
    ids = [
        store(db, shopify("app/scopes_update", "m.myshopify.com", {"current": ["read_orders"]})),
        store(
            db,
            shopify("shop/update", "m.myshopify.com", {"name": "Moda", "plan_name": "basic"}),
        ),
        store(db, shopify("customers/redact", "m.myshopify.com", {"customer": {"id": 1}})),
        store(db, shopify("orders/create", "m.myshopify.com", {"id": 5})),
    ]
    report = inbox.process_events(db, ids)
    assert report.processed == 4
    current = account_now(db, account.id)
    assert current.status == "connected"
    assert current.meta["scopes"] == ["read_orders"]
    assert current.meta["shop_name"] == "Moda"
    assert current.meta["plan_name"] == "basic"
    effects = [row(db, i).effect for i in ids]
    assert effects == [
        "scopes updated",
        "metadata updated",
        "compliance request customers/redact recorded",
        "recorded",
    ]
    assert [e["topic"] for e in provider_events_of(db, account.id)] == [
        "app/scopes_update",
        "shop/update",
        "customers/redact",
        "orders/create",
    ]


def test_an_older_event_never_overrides_a_newer_one(db: Database, vault: Vault) -> None:
    account = make_account(db, vault, "shopify", connection={"shop_domain": "o.myshopify.com"})
    newer = store(
        db, shopify("shop/update", "o.myshopify.com", {"name": "New"}, "2026-11-02T10:00:00Z")
    )
    older = store(
        db, shopify("shop/update", "o.myshopify.com", {"name": "Old"}, "2026-11-02T09:00:00Z")
    )
    older_uninstall = store(
        db, shopify("app/uninstalled", "o.myshopify.com", {}, "2026-11-02T08:00:00Z")
    )
    inbox.process_events(db, [newer])
    inbox.process_events(db, [older, older_uninstall])

    current = account_now(db, account.id)
    assert current.meta["shop_name"] == "New"
    assert current.status == "connected"
    assert open_errors(db, account.id) == {}
    assert row(db, older).effect is not None
    assert row(db, older).effect.startswith("not applied: older than")
    assert [e["applied"] for e in provider_events_of(db, account.id)] == [True, False, False]

    newest = store(db, shopify("app/uninstalled", "o.myshopify.com", {}, "2026-11-02T11:00:00Z"))
    inbox.process_events(db, [newest])
    assert account_now(db, account.id).status == "disconnected"


def test_a_newer_event_that_failed_does_not_hold_back_an_older_one(
    db: Database, vault: Vault
) -> None:
    """The newer-wins mark of an event whose savepoint was rolled back is gone with it."""
    account = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_order1"}
    )
    body = (
        b'{"id": "evt_broken_newer", "type": "account.updated", "account": "acct_order1",'
        b' "created": 1800000200, "data": 1}'
    )
    broken = store(db, parse_stripe(body))
    obj = {"id": "acct_order1", "charges_enabled": False, "payouts_enabled": True}
    older = store(db, stripe("account.updated", "acct_order1", created=1_800_000_100, obj=obj))

    report = inbox.process_events(db, [broken, older])
    assert list(report.retry) == [broken]
    assert report.processed == 1
    assert not (row(db, older).effect or "").startswith("not applied")
    assert account_now(db, account.id).meta["charges_enabled"] is False
    assert [e["applied"] for e in provider_events_of(db, account.id)] == [True]


def test_stripe_deauthorized_and_account_updated(db: Database, vault: Vault) -> None:
    connect = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_conn1"}
    )
    keyed = make_account(
        db,
        vault,
        "stripe",
        connection={"mode": "api_key", "key_last4": "wxyz"},
        meta={"stripe_account_id": "acct_keyed1"},
    )
    deauth = store(db, stripe("account.application.deauthorized", "acct_conn1"))
    restricted = stripe(
        "account.updated",
        "acct_keyed1",
        created=1_800_000_000,
        obj={
            "id": "acct_keyed1",
            "charges_enabled": False,
            "payouts_enabled": True,
            "requirements": {"disabled_reason": "requirements.past_due", "past_due": ["tos"]},
        },
    )
    inbox.process_events(db, [deauth, store(db, restricted)])

    assert account_now(db, connect.id).status == "disconnected"
    assert "connection_revoked" in open_errors(db, connect.id)
    locked = account_now(db, keyed.id)
    assert locked.status == "error"
    assert locked.meta["charges_enabled"] is False
    assert locked.meta["disabled_reason"] == "requirements.past_due"
    message = open_errors(db, keyed.id)["account_locked"].message
    assert "charges" in message
    assert "tos" in message

    enabled = stripe(
        "account.updated",
        "acct_keyed1",
        created=1_800_000_100,
        obj={"charges_enabled": True, "payouts_enabled": True, "requirements": {}},
    )
    inbox.process_events(db, [store(db, enabled)])
    assert account_now(db, keyed.id).status == "connected"
    assert open_errors(db, keyed.id) == {}


def test_unroutable_is_kept_listed_and_replayable(db: Database, vault: Vault) -> None:
    event_id = store(db, shopify("shop/update", "later.myshopify.com", {"name": "Later"}))
    report = inbox.process_events(db, [event_id])
    assert report.unroutable == 1
    kept = row(db, event_id)
    assert kept.status == "unroutable"
    assert kept.last_error is not None
    assert "later.myshopify.com" in kept.last_error
    with db.unit_of_work() as session:
        listed = inbox.list_events(session)
    assert [e["id"] for e in listed] == [str(event_id)]

    account = make_account(db, vault, "shopify", connection={"shop_domain": "later.myshopify.com"})
    with db.unit_of_work() as session:
        view = inbox.replay(session, kept.provider_event_id)
    assert view["status"] == "received"
    inbox.process_events(db, [event_id])
    assert row(db, event_id).status == "processed"
    assert account_now(db, account.id).meta["shop_name"] == "Later"
    with db.unit_of_work() as session, pytest.raises(Rejected, match="processed"):
        inbox.replay(session, str(event_id))
    with db.unit_of_work() as session, pytest.raises(Rejected):
        inbox.replay(session, str(uuid.uuid4()))
    with db.unit_of_work() as session, pytest.raises(Rejected):
        inbox.list_events(session, "nonsense")


def test_failures_retry_with_backoff_then_fail_and_replay(db: Database, vault: Vault) -> None:
    account = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_bad1"}
    )
    body = b'{"id": "evt_broken", "type": "account.updated", "account": "acct_bad1", "data": 1}'
    broken = store(db, parse_stripe(body))
    good = store(db, stripe("customer.created", "acct_bad1"))

    report = inbox.process_events(db, [broken, good])
    # The broken event does not hold back the good one of the same batch.
    assert report.processed == 1
    assert list(report.retry) == [broken]
    assert report.retry[broken] == inbox.retry_delay(1)
    first = row(db, broken)
    assert (first.status, first.attempts) == ("received", 1)
    assert first.last_error is not None
    assert "data.object" in first.last_error
    assert first.next_attempt_at is not None
    assert row(db, good).status == "processed"
    assert inbox.retry_delay(2) == 2 * inbox.retry_delay(1)

    for _ in range(inbox.MAX_ATTEMPTS - 1):
        report = inbox.process_events(db, [broken])
    assert report.failed == 1
    failed = row(db, broken)
    assert (failed.status, failed.attempts) == ("failed", inbox.MAX_ATTEMPTS)
    assert failed.next_attempt_at is None
    assert "event_unprocessable" in open_errors(db, account.id)
    assert account_now(db, account.id).status == "connected"
    with db.unit_of_work() as session:
        assert [e["id"] for e in inbox.list_events(session, "failed")] == [str(broken)]
        assert inbox.replay(session, str(broken))["attempts"] == 0
    assert inbox.process_events(db, [broken]).retry  # still broken: retried again


def test_concurrent_and_repeated_processing_has_one_effect(db: Database, vault: Vault) -> None:
    accounts = [
        make_account(
            db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": f"acct_c{i}"}
        )
        for i in range(5)
    ]
    ids = [store(db, stripe("invoice.paid", f"acct_c{i % 5}")) for i in range(60)]
    ids += [store(db, stripe("account.application.deauthorized", f"acct_c{i}")) for i in range(5)]
    errors: list[BaseException] = []

    def work(order: list[uuid.UUID]) -> None:
        try:
            for start in range(0, len(order), 7):
                inbox.process_events(db, order[start : start + 7])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(ids[::step],)) for step in (1, 1, -1, -1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    inbox.process_events(db, ids)  # a late redelivery of everything finds nothing to do

    with db.unit_of_work() as session:
        published = Counter(
            session.scalars(
                select(OutboxEvent.data["event_id"].as_string()).where(
                    OutboxEvent.type == "provider.event"
                )
            )
        )
        statuses = set(session.scalars(select(InboundEvent.status)))
    assert published == {str(i): 1 for i in ids}
    assert statuses == {"processed"}
    for account in accounts:
        assert effects_of(db, account.id)["account.status_changed"] == 1


def test_sweeper_finds_what_was_left(db: Database) -> None:
    old = store(db, stripe("invoice.paid", "acct_nobody"))
    waiting = store(db, stripe("invoice.paid", "acct_nobody"))
    fresh = store(db, stripe("invoice.paid", "acct_nobody"))
    done = store(db, stripe("invoice.paid", "acct_nobody"))
    long_ago = utc_now() - timedelta(minutes=5)
    with db.unit_of_work() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id.in_([old, waiting, done]))
            .values(received_at=long_ago)
        )
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == waiting)
            .values(next_attempt_at=utc_now() + timedelta(minutes=5))
        )
        session.execute(
            update(InboundEvent).where(InboundEvent.id == done).values(status="processed")
        )
    with db.unit_of_work() as session:
        assert inbox.due_for_requeue(session) == [old]
        assert set(inbox.due_for_requeue(session, timedelta(0))) == {old, fresh}


def test_fortnox_events_route_by_tenant_and_offsets_only_advance(
    db: Database, vault: Vault
) -> None:
    account = make_account(db, vault, "fortnox", credentials={"access_token": "tok-1"})
    provider_events.record_stream_tenants(db, "fortnox", {account.id: "777"}, [])
    assert account_now(db, account.id).meta["fortnox_tenant_id"] == "777"

    message = {
        "topic": "invoices",
        "offset": "1005",
        "type": "invoice-created-v1",
        "tenantId": 777,
        "entityId": "42",
        "timestamp": "2026-11-01T10:00:00Z",
    }
    with db.engine.begin() as conn:
        [first] = inbox.store_stream_events(
            conn, "fortnox", [inbox.Incoming(parse_fortnox(message))], {"invoices": 1005}
        )
    with db.engine.begin() as conn:
        [again] = inbox.store_stream_events(
            conn, "fortnox", [inbox.Incoming(parse_fortnox(message))], {"invoices": 1001}
        )
    assert (first.status, again.status, again.id) == ("accepted", "duplicate", first.id)
    with db.unit_of_work() as session:
        assert inbox.stream_offsets(session, "fortnox") == {"invoices": 1005}
    inbox.process_events(db, [first.id])
    [published] = provider_events_of(db, account.id)
    assert published["payload"]["entityId"] == "42"
    assert published["occurred_at"] == datetime(2026, 11, 1, 10, tzinfo=UTC).isoformat()


def test_refused_fortnox_token_opens_an_error(db: Database, vault: Vault) -> None:
    account = make_account(db, vault, "fortnox", credentials={"access_token": "tok-dead"})
    provider_events.record_stream_tenants(db, "fortnox", {}, [account.id])
    provider_events.record_stream_tenants(db, "fortnox", {}, [account.id])
    assert account_now(db, account.id).status == "error"
    error = open_errors(db, account.id)["credentials_invalid"]
    assert error.occurrences == 2
    assert error.source == "event"


def test_a_batch_is_stamped_and_published_in_the_order_it_arrived(
    db: Database, vault: Vault
) -> None:
    """Processing writes a batch set-based: every row gets its own account and effect, and the
    `provider.event` rows keep the order the events were received in."""
    first = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_ord1"}
    )
    second = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_ord2"}
    )
    ids = [
        store(
            db, stripe("invoice.paid", "acct_ord1" if i % 2 else "acct_ord2", event_id=f"evt_o{i}")
        )
        for i in range(6)
    ]
    assert inbox.process_events(db, list(reversed(ids))).processed == 6
    for i, event_id in enumerate(ids):
        stored = row(db, event_id)
        assert stored.status == "processed"
        assert stored.account_id == (first.id if i % 2 else second.id)
        assert stored.effect == "recorded"
        assert stored.processed_at is not None
        assert (stored.last_error, stored.next_attempt_at) == (None, None)
    assert [e["provider_event_id"] for e in provider_events_of(db, first.id)] == [
        "evt_o1",
        "evt_o3",
        "evt_o5",
    ]
    with db.unit_of_work() as session:
        published = session.scalars(
            select(OutboxEvent.data["event_id"].as_string())
            .where(OutboxEvent.type == "provider.event")
            .order_by(OutboxEvent.seq)
        )
        assert list(published) == [str(i) for i in ids]


def test_recording_batches_share_account_locks_and_changes_wait(db: Database, vault: Vault) -> None:
    """Events that are only recorded take the account's lock `FOR SHARE`, so another batch
    recording events for the same account does not wait for it; a topic that changes the
    account takes it `FOR UPDATE` and waits."""
    account = make_account(db, vault, "shopify", connection={"shop_domain": "lk.myshopify.com"})
    recorded = store(db, shopify("orders/create", "lk.myshopify.com", {"id": 1}))
    change = store(db, shopify("shop/update", "lk.myshopify.com", {"name": "Locked"}))

    def process(event_id: uuid.UUID) -> threading.Thread:
        thread = threading.Thread(target=inbox.process_events, args=(db, [event_id]))
        thread.start()
        return thread

    with db.engine.connect() as holder:
        # Another batch that only records events for this account, mid-transaction.
        holder.execute(text("SELECT 1 FROM accounts WHERE id = :id FOR SHARE"), {"id": account.id})
        sharing = process(recorded)
        sharing.join(timeout=30)
        assert not sharing.is_alive()
        assert row(db, recorded).status == "processed"

        changing = process(change)
        changing.join(timeout=1.0)
        assert changing.is_alive()  # waiting for the lock
        assert row(db, change).status == "received"
        holder.rollback()
    changing.join(timeout=30)
    assert not changing.is_alive()
    assert row(db, change).status == "processed"
    assert account_now(db, account.id).meta["shop_name"] == "Locked"
