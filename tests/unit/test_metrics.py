"""The metric families of the contract, with exactly its names, types and labels; the words the
webhook answers are counted under; how checks and refreshes are counted, crashes included; and
the state gauges answered from a snapshot at most `ttl` old (on SQLite, no services)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.registry import CollectorRegistry

from connectors.base import ErrorCode, PermanentFailure, TemporaryFailure
from connectors.events import MalformedEvent, NoSecretConfigured, SignatureError
from models import AccountStatus, Base, Database, ProviderIncident, utc_now
from worker import metrics
from worker.api import webhooks
from worker.api.inbox_writer import StoreUnavailable
from worker.observe.state import StateCollector

# The contract's Metrics table: name -> (type, labels).
CONTRACT = {
    "connections_checks_total": ("counter", ["provider", "outcome"]),
    "connections_check_seconds": ("histogram", ["provider"]),
    "connections_accounts": ("gauge", ["provider", "status"]),
    "connections_incidents_open": ("gauge", ["provider"]),
    "connections_webhooks_total": ("counter", ["provider", "answer"]),
    "connections_inbox_pending": ("gauge", ["provider"]),
    "connections_inbox_oldest_pending_seconds": ("gauge", []),
    "connections_events_processed_total": ("counter", ["provider", "outcome"]),
    "connections_outbox_unpublished": ("gauge", []),
    "connections_outbox_oldest_unpublished_seconds": ("gauge", []),
    "connections_jobs_total": ("counter", ["task", "status"]),
    "connections_job_seconds": ("histogram", ["task"]),
    "connections_refreshes_total": ("counter", ["provider", "outcome"]),
    "connections_fortnox_stream_connected": ("gauge", []),
}
WEBHOOK_WORDS = {"accepted", "duplicate", "refused", "too_large", "malformed", "unavailable"}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def state_db(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'state.db'}")
    Base.metadata.create_all(db.engine)
    return db


def declared(registry: Any) -> dict[str, tuple[str, list[str]]]:
    """Each family's type and label names, as a scrape would show them."""
    found: dict[str, tuple[str, list[str]]] = {}
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: list[str] = []
        for s in family.samples:
            labels = [k for k in s.labels if k != "le"]
            break
        found[name] = (family.type, labels)
    return found


def test_every_family_of_the_contract_has_its_name_type_and_labels(tmp_path: Path) -> None:
    # Counters and histograms appear once they have a child: give each one.
    metrics.CHECKS.labels("stripe", "passed")
    metrics.CHECK_SECONDS.labels("stripe")
    webhooks.WEBHOOKS.labels("stripe", "accepted")
    metrics.EVENTS.labels("stripe", "applied")
    metrics.JOBS.labels("accounts.add", "succeeded")
    metrics.JOB_SECONDS.labels("accounts.add")
    metrics.REFRESHES.labels("fortnox", "refreshed")
    metrics.stream_connected("fortnox", False)
    state = CollectorRegistry()
    state.register(StateCollector(state_db(tmp_path), ["stripe"]))

    found = {**declared(REGISTRY), **declared(state)}

    for name, (kind, labels) in CONTRACT.items():
        assert name in found, name
        assert found[name] == (kind, labels), name


@pytest.mark.parametrize(
    ("error", "word"),
    [
        (NoSecretConfigured("no secret"), "refused"),
        (SignatureError("bad"), "refused"),
        (webhooks.TooLarge(), "too_large"),
        (MalformedEvent("not json"), "malformed"),
        (webhooks.ClientGone(), "malformed"),
        (StoreUnavailable("down"), "unavailable"),
        (RuntimeError("a bug"), "unavailable"),
    ],
)
def test_webhook_refusals_are_counted_under_the_contract_words(error: Exception, word: str) -> None:
    before = sample("connections_webhooks_total", provider="unit-provider", answer=word)
    webhooks._refusal("unit-provider", error)
    assert sample("connections_webhooks_total", provider="unit-provider", answer=word) == before + 1
    assert word in WEBHOOK_WORDS


def test_every_status_the_ingest_refuses_with_has_a_contract_word() -> None:
    assert set(metrics.WEBHOOK_ANSWERS.values()) <= WEBHOOK_WORDS
    assert set(metrics.WEBHOOK_ANSWERS) == {400, 401, 404, 413, 500, 503}


@dataclass
class FakeAccount:
    type: str


@dataclass
class FakeProbe:
    outcome: object


def test_a_check_is_counted_by_outcome_and_timed() -> None:
    @metrics.timed_check
    async def probe(deps: Any, account: FakeAccount, outcome: object) -> FakeProbe:
        return FakeProbe(outcome)

    provider = "unit-checks"
    failure = PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "no")
    asyncio.run(probe(None, FakeAccount(provider), object()))
    asyncio.run(probe(None, FakeAccount(provider), failure))

    assert sample("connections_checks_total", provider=provider, outcome="passed") == 1
    assert sample("connections_checks_total", provider=provider, outcome="credentials_invalid") == 1
    assert sample("connections_check_seconds_count", provider=provider) == 2


def test_a_check_that_crashes_is_counted_as_crashed_and_raises() -> None:
    @metrics.timed_check
    async def probe(deps: Any, account: FakeAccount) -> FakeProbe:
        raise RuntimeError("the database went away")

    with pytest.raises(RuntimeError):
        asyncio.run(probe(None, FakeAccount("unit-crash")))
    assert sample("connections_checks_total", provider="unit-crash", outcome="crashed") == 1


def test_a_check_decided_without_the_provider_is_counted() -> None:
    failure = PermanentFailure(ErrorCode.CREDENTIALS_UNREADABLE, "no key")
    probe = FakeProbe(failure)
    assert metrics.checked("unit-unreadable", probe) is probe
    assert (
        sample(
            "connections_checks_total", provider="unit-unreadable", outcome="credentials_unreadable"
        )
        == 1
    )


def test_refreshes_are_counted_by_outcome() -> None:
    provider = "unit-refresh"
    with metrics.refreshing(provider):
        pass
    with pytest.raises(TemporaryFailure), metrics.refreshing(provider):
        raise TemporaryFailure(ErrorCode.TIMEOUT, "slow")
    with pytest.raises(PermanentFailure), metrics.refreshing(provider):
        raise PermanentFailure(ErrorCode.REFRESH_FAILED, "spent")

    for outcome in ("refreshed", "timeout", "refresh_failed"):
        assert sample("connections_refreshes_total", provider=provider, outcome=outcome) == 1


def test_events_are_added_by_provider_and_outcome() -> None:
    metrics.count_events({("unit-events", "applied"): 3, ("unit-events", "stale"): 1})
    assert (
        sample("connections_events_processed_total", provider="unit-events", outcome="applied") == 3
    )
    assert (
        sample("connections_events_processed_total", provider="unit-events", outcome="stale") == 1
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_state_gauges_are_read_at_most_once_per_ttl_and_zero_for_known_providers(
    tmp_path: Path,
) -> None:
    db = state_db(tmp_path)
    clock = Clock()
    registry = CollectorRegistry()
    registry.register(StateCollector(db, ["stripe", "fortnox"], ttl=30, clock=clock))

    assert gauge(registry, "connections_incidents_open", provider="stripe") == 0
    assert gauge(registry, "connections_accounts", provider="fortnox", status="error") == 0
    for status in AccountStatus:
        assert gauge(registry, "connections_accounts", provider="stripe", status=status) == 0
    with db.unit_of_work() as session:
        session.add(ProviderIncident(provider="stripe", reason="down", started_at=utc_now()))

    clock.now += 29  # within the TTL: the snapshot
    assert gauge(registry, "connections_incidents_open", provider="stripe") == 0
    clock.now += 1
    assert gauge(registry, "connections_incidents_open", provider="stripe") == 1


def test_state_gauges_are_left_out_while_the_database_fails(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'missing' / 'no-tables.db'}")  # no tables: queries fail
    registry = CollectorRegistry()
    registry.register(StateCollector(db, ["stripe"], ttl=30, clock=Clock()))

    assert gauge(registry, "connections_incidents_open", provider="stripe") is None
    assert gauge(registry, "connections_outbox_unpublished") is None
