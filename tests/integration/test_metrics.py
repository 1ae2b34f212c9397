"""Each metric family has a sample after the action that drives it, over the real PostgreSQL:
checks, refreshes, webhooks, processed events, jobs, the Fortnox stream, and the gauges of the
database's state. Counters are compared before and after, as the registry is the process's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from prometheus_client import REGISTRY, CollectorRegistry
from sqlalchemy import update

from connectors.registry import PROVIDERS
from connectors.stripe import parse_stripe, stripe_header
from models import (
    Account,
    AccountError,
    Database,
    InboundEvent,
    OutboxEvent,
    ProviderIncident,
    utc_now,
)
from tests.fixtures.checks import (
    CheckedStripe,
    checker,
    insert_stripe_accounts,
    make_due,
    run_due,
)
from tests.fixtures.ingest import (
    STRIPE_SECRETS,
    IngestApp,
    TcpProxy,
    make_account,
    stripe_delivery,
    stripe_event,
)
from tests.integration.test_inbox import shopify, store, stripe
from tests.integration.test_inbox_fortnox import SECRET, Running, fortnox_credentials, wait_for
from tests.integration.test_inbox_fortnox import options as stream_options
from tests.integration.test_refresh_on_rejection import fortnox_account, refuse_token
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.fortnox_ws import FortnoxStreamSimulator
from worker.observe.state import StateCollector
from worker.service import inbox
from worker.service.deps import Deps
from worker.service.inbox import MAX_ATTEMPTS
from worker.streams.fortnox import FortnoxListener
from worker.tasks import jobtask
from worker.vault import Vault


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """The values of some samples now, to compare with later."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = [sample(name, **labels) for name, labels in samples]

    def added(self) -> list[float]:
        return [
            sample(name, **labels) - before
            for (name, labels), before in zip(self.samples, self.before, strict=True)
        ]


def checks(provider: str, outcome: str) -> tuple[str, dict[str, str]]:
    return "connections_checks_total", {"provider": provider, "outcome": outcome}


def test_scheduled_checks_are_counted_by_outcome_and_timed(
    check_deps: Deps, stripe_checks: CheckedStripe, vault: Vault
) -> None:
    insert_stripe_accounts(check_deps.db, vault, stripe_checks, 3)
    insert_stripe_accounts(check_deps.db, vault, stripe_checks, 1, rolled=True)
    [(unreadable, _)] = insert_stripe_accounts(check_deps.db, vault, stripe_checks, 1)
    with check_deps.db.unit_of_work() as session:
        dropped = Vault([Fernet.generate_key().decode()]).encrypt({"api_key": "sk_test_x"})
        session.execute(update(Account).where(Account.id == unreadable).values(credentials=dropped))
    counts = Counts(
        checks("stripe", "passed"),
        checks("stripe", "credentials_invalid"),
        checks("stripe", "credentials_unreadable"),
        ("connections_check_seconds_count", {"provider": "stripe"}),
    )

    make_due(check_deps)
    run_due(check_deps, checker(check_deps))

    assert counts.added() == [3, 1, 1, 5]
    assert sample("connections_check_seconds_sum", provider="stripe") > 0


def test_refreshes_are_counted_refreshed_or_failed(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any, check_account: Any
) -> None:
    counts = Counts(
        ("connections_refreshes_total", {"provider": "fortnox", "outcome": "refreshed"}),
        ("connections_refreshes_total", {"provider": "fortnox", "outcome": "refresh_failed"}),
        checks("fortnox", "passed"),
        checks("fortnox", "refresh_failed"),
    )
    account_id = fortnox_account(deps, fortnox_sim, add_account)
    refuse_token(deps, fortnox_sim, account_id)
    assert check_account(deps, account_id)["status"] == "succeeded"  # refreshed, then passed

    spent = refuse_token(deps, fortnox_sim, account_id)
    fortnox_sim.use_refresh_token(spent["refresh_token"])
    assert check_account(deps, account_id)["error_code"] == "refresh_failed"

    assert counts.added() == [1, 1, 1, 1]


def webhooks(answer: str, provider: str = "stripe") -> tuple[str, dict[str, str]]:
    return "connections_webhooks_total", {"provider": provider, "answer": answer}


def sign(body: bytes) -> str:
    return stripe_header(STRIPE_SECRETS[0], body)


def post(url: str, body: bytes, headers: dict[str, str], path: str = "/webhooks/stripe") -> int:
    return httpx.post(f"{url}{path}", content=body, headers=headers, timeout=10).status_code


def test_webhooks_are_counted_by_the_contract_answers(db: Database, ingest_app: IngestApp) -> None:
    words = ("accepted", "duplicate", "refused", "too_large", "malformed")
    counts = Counts(*(webhooks(w) for w in words))
    body, headers = stripe_delivery(stripe_event("customer.created"))
    assert post(ingest_app.url, body, headers) == 200
    assert post(ingest_app.url, body, headers) == 200  # the same event again
    forged, _ = stripe_delivery(stripe_event("customer.created"))
    assert post(ingest_app.url, forged, headers) == 401
    assert post(ingest_app.url, b"x" * (1024 * 1024 + 1), headers) == 413
    broken = b"{not json"
    assert post(ingest_app.url, broken, {"Stripe-Signature": sign(broken)}) == 400
    assert post(ingest_app.url, body, headers, f"/webhooks/stripe/{uuid.uuid4()}") == 404

    assert counts.added() == [1, 1, 2, 1, 1]


def test_a_webhook_the_store_cannot_take_is_counted_unavailable(
    proxied_ingest: tuple[IngestApp, TcpProxy],
) -> None:
    app, proxy = proxied_ingest
    counts = Counts(webhooks("unavailable"))
    proxy.cut()
    body, headers = stripe_delivery(stripe_event("customer.created"))
    assert post(app.url, body, headers) == 503
    assert counts.added() == [1]


def events(outcome: str, provider: str = "shopify") -> tuple[str, dict[str, str]]:
    return "connections_events_processed_total", {"provider": provider, "outcome": outcome}


def test_processed_events_are_counted_by_what_became_of_them(db: Database, vault: Vault) -> None:
    make_account(db, vault, "shopify", connection={"shop_domain": "m.myshopify.com"})
    counts = Counts(*(events(o) for o in ("applied", "recorded", "stale", "unroutable")))
    newer = store(db, shopify("shop/update", "m.myshopify.com", {"name": "N"}, "2026-11-02T10:00Z"))
    older = store(db, shopify("shop/update", "m.myshopify.com", {"name": "O"}, "2026-11-02T09:00Z"))
    order = store(db, shopify("orders/create", "m.myshopify.com", {"id": 1}))
    lost = store(db, shopify("shop/update", "nobody.myshopify.com", {"name": "X"}))
    inbox.process_events(db, [newer])
    inbox.process_events(db, [older, order, lost])
    inbox.process_events(db, [newer, older])  # processed already: nothing more is counted

    assert counts.added() == [1, 1, 1, 1]


def test_an_event_that_used_its_attempts_is_counted_failed_and_a_retry_is_not(
    db: Database, vault: Vault
) -> None:
    make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_fail1"}
    )
    body = b'{"id": "evt_broken", "type": "account.updated", "account": "acct_fail1", "data": 1}'
    retried = store(db, parse_stripe(body))
    last = store(db, parse_stripe(body.replace(b"evt_broken", b"evt_broken_last")))
    with db.unit_of_work() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == last)
            .values(attempts=MAX_ATTEMPTS - 1, last_error="ValueError: an earlier try")
        )
    counts = Counts(events("failed", "stripe"), events("applied", "stripe"))

    first = inbox.process_events(db, [retried])
    final = inbox.process_events(db, [last])

    assert list(first.retry) == [retried]
    assert final.failed == 1
    assert counts.added() == [1, 0]


@pytest.fixture
def task_deps(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> Deps:
    monkeypatch.setattr(jobtask, "get_deps", lambda: deps)
    return deps


def test_jobs_are_counted_by_task_and_status_and_timed(task_deps: Deps) -> None:
    counts = Counts(
        ("connections_jobs_total", {"task": "integrations.link", "status": "succeeded"}),
        ("connections_jobs_total", {"task": "integrations.link", "status": "rejected"}),
        ("connections_job_seconds_count", {"task": "integrations.link"}),
    )
    account = make_account(task_deps.db, task_deps.vault, "shopify", org_id="org-1")
    task: Any = SimpleNamespace(name="integrations.link", request=SimpleNamespace(id=None))
    link = {"account_id": str(account.id), "integration_id": "wf-1", "name": "Invoice sync"}

    task.request.id = str(uuid.uuid4())
    ok = jobtask.execute(task, (), {"org_id": "org-1", **link})
    task.request.id = str(uuid.uuid4())
    refused = jobtask.execute(task, (), {"org_id": "org-1", "colour": "blue"})

    assert (ok["status"], refused["status"]) == ("succeeded", "rejected")
    assert counts.added() == [1, 1, 2]


@pytest.fixture
def stream_sim() -> Iterator[FortnoxStreamSimulator]:
    simulator = FortnoxStreamSimulator(SECRET).start()
    yield simulator
    simulator.stop()


def test_the_fortnox_stream_reads_connected_while_subscribed(
    db: Database, vault: Vault, deps: Deps, stream_sim: FortnoxStreamSimulator
) -> None:
    make_account(db, vault, "fortnox", credentials=fortnox_credentials("tok-metrics"))
    stream_sim.add_tenant("tok-metrics")
    running = Running(FortnoxListener(deps, stream_options(stream_sim), lambda ids: None))
    try:
        wait_for(lambda: sample("connections_fortnox_stream_connected") == 1)
        stream_sim.drop_connections()
        wait_for(lambda: stream_sim.connections_made >= 2)
        wait_for(lambda: sample("connections_fortnox_stream_connected") == 1)
    finally:
        running.stop()
    assert sample("connections_fortnox_stream_connected") == 0


def state(db: Database) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(StateCollector(db, list(PROVIDERS)))
    return registry


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_state_gauges_read_the_database(db: Database, vault: Vault) -> None:
    now = utc_now()
    for status in ("connected", "connected", "error"):
        make_account(db, vault, "stripe", status=status)
    broken = make_account(db, vault, "fortnox", status="error")
    with db.unit_of_work() as session:
        session.add(ProviderIncident(provider="shopify", reason="5xx", started_at=now))
        session.add(
            ProviderIncident(provider="shopify", reason="old", started_at=now, ended_at=now)
        )
        session.add(
            AccountError(
                account_id=broken.id,
                code="credentials_unreadable",
                message="no key",
                source="check",
                first_occurred_at=now,
                last_occurred_at=now,
            )
        )
    old = store(db, stripe("customer.created"))
    store(db, stripe("customer.created"))
    done = store(db, shopify("orders/create", "x.myshopify.com", {"id": 2}))
    inbox.process_events(db, [done])  # unroutable: no longer pending
    with db.unit_of_work() as session:
        session.execute(
            update(InboundEvent)
            .where(InboundEvent.id == old)
            .values(received_at=now - timedelta(minutes=7))
        )
        for n, age in enumerate((timedelta(minutes=3), timedelta(0))):
            session.add(
                OutboxEvent(
                    type="account.status_changed",
                    org_id="org-1",
                    occurred_at=now - age,
                    data={"n": n},
                )
            )
        session.add(
            OutboxEvent(type="x", org_id="org-1", occurred_at=now, data={}, published_at=now)
        )

    registry = state(db)

    assert gauge(registry, "connections_accounts", provider="stripe", status="connected") == 2
    assert gauge(registry, "connections_accounts", provider="stripe", status="error") == 1
    assert gauge(registry, "connections_accounts", provider="fortnox", status="error") == 1
    assert gauge(registry, "connections_accounts", provider="hubspot", status="pending") == 0
    assert gauge(registry, "connections_incidents_open", provider="shopify") == 1
    assert gauge(registry, "connections_incidents_open", provider="stripe") == 0
    assert gauge(registry, "connections_inbox_pending", provider="stripe") == 2
    assert gauge(registry, "connections_inbox_pending", provider="shopify") == 0
    oldest = gauge(registry, "connections_inbox_oldest_pending_seconds")
    assert oldest is not None
    assert 7 * 60 <= oldest < 8 * 60
    assert gauge(registry, "connections_outbox_unpublished") == 2
    outbox_oldest = gauge(registry, "connections_outbox_oldest_unpublished_seconds")
    assert outbox_oldest is not None
    assert 3 * 60 <= outbox_oldest < 4 * 60
    assert (
        gauge(
            registry,
            "connections_account_errors_open",
            provider="fortnox",
            code="credentials_unreadable",
        )
        == 1
    )


def test_state_gauges_of_an_empty_database_are_zero(db: Database) -> None:
    registry = state(db)
    assert gauge(registry, "connections_inbox_oldest_pending_seconds") == 0
    assert gauge(registry, "connections_outbox_unpublished") == 0
    assert gauge(registry, "connections_outbox_oldest_unpublished_seconds") == 0
    assert gauge(registry, "connections_accounts", provider="stripe", status="connected") == 0
