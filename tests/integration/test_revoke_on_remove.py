"""Removing an account revokes its grant at the provider, once, for each provider that offers it
(Shopify OAuth, Stripe Connect, Fortnox, HubSpot), and says so in the result and the audit
trail. A provider that is down never blocks the removal: the result says `revoked: false`, and
the background retry (queued only once the removal commits, the credentials sealed) revokes it
once the provider is back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from connectors.base import TemporaryFailure
from models import Account, AuditEntry
from tests.conftest import FAST_RETRY
from tests.integration.jobs import ADMIN, add, link, remove
from tests.simulators.base import Answer
from worker.service import revocation
from worker.service.deps import Deps
from worker.tasks.revoke import MAX_RETRIES, countdown

REDIRECT = "https://app.standout.test/connect/callback"


@dataclass
class Provider:
    """How to connect one kind of account at its simulator, where its revocation goes, and how
    many revocations the simulator has accepted for it."""

    type: str
    sim: Any
    revoke_path: str
    connect: Callable[[], tuple[dict[str, Any], Callable[[], int]]]


def provider(name: str, request: pytest.FixtureRequest) -> Provider:
    if name == "shopify":
        sim = request.getfixturevalue("shopify_sim")

        def shop() -> tuple[dict[str, Any], Callable[[], int]]:
            domain = sim.add_shop()
            return (
                {"shop_domain": domain, "code": sim.issue_code(domain)},
                lambda: sim.revoked.count(domain),
            )

        return Provider("shopify", sim, "/{shop}/admin/api_permissions/current.json", shop)
    if name == "stripe":
        sim = request.getfixturevalue("stripe_sim")

        def connected() -> tuple[dict[str, Any], Callable[[], int]]:
            account_id, _ = sim.add_account("Connected AB")
            return {"code": sim.issue_code(account_id)}, lambda: sim.deauthorized(account_id)

        return Provider("stripe", sim, "/oauth/deauthorize", connected)
    if name == "fortnox":
        sim = request.getfixturevalue("fortnox_sim")

        def company() -> tuple[dict[str, Any], Callable[[], int]]:
            code = sim.issue_code(sim.add_tenant("Acme AB"), REDIRECT)
            before = len(sim.revoked)
            return {"code": code, "redirect_uri": REDIRECT}, lambda: len(sim.revoked) - before

        return Provider("fortnox", sim, "/oauth-v1/revoke", company)
    sim = request.getfixturevalue("hubspot_sim")

    def portal() -> tuple[dict[str, Any], Callable[[], int]]:
        code = sim.issue_code(sim.add_portal(), REDIRECT)
        before = len(sim.revoked)
        return {"code": code, "redirect_uri": REDIRECT}, lambda: len(sim.revoked) - before

    from tests.simulators.hubspot import REVOKE_PATH

    return Provider("hubspot", sim, REVOKE_PATH, portal)


PROVIDERS = ["shopify", "stripe", "fortnox", "hubspot"]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The retry orders queued, in place of the Celery worker's sender."""
    orders: list[dict[str, Any]] = []
    monkeypatch.setattr(revocation, "_senders", [orders.append])
    return orders


def connected(deps: Deps, p: Provider) -> tuple[str, Callable[[], int]]:
    credentials, revocations = p.connect()
    result = add(deps, type=p.type, credentials=credentials)
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"]), revocations


def revoked_entries(deps: Deps, account_id: str) -> list[AuditEntry]:
    with deps.db.unit_of_work() as s:
        return list(
            s.scalars(
                select(AuditEntry)
                .where(
                    AuditEntry.account_id == uuid.UUID(account_id),
                    AuditEntry.action == "credentials.revoked",
                )
                .order_by(AuditEntry.occurred_at)
            )
        )


def down(p: Provider, account_id: str, deps: Deps) -> None:
    """Every try of one revocation is answered 503."""
    path = p.revoke_path
    if "{shop}" in path:
        with deps.db.unit_of_work() as s:
            account = s.get(Account, uuid.UUID(account_id))
            assert account is not None
            path = path.format(shop=account.connection["shop_domain"])
    p.sim.script.push(Answer(503, path=path), FAST_RETRY.attempts)


@pytest.mark.parametrize("name", PROVIDERS)
def test_remove_revokes_once_and_audits_it(
    deps: Deps, request: pytest.FixtureRequest, sent: list[dict[str, Any]], name: str
) -> None:
    p = provider(name, request)
    account_id, revocations = connected(deps, p)
    assert revocations() == 0

    result = remove(deps, account_id=account_id)

    assert result["status"] == "succeeded", result
    assert result["revoked"] is True
    assert revocations() == 1
    assert sent == []  # nothing to retry
    [entry] = revoked_entries(deps, account_id)
    assert (entry.outcome, entry.cause, entry.actor) == (True, "job", ADMIN)
    assert entry.job_id == result["job_id"]
    assert entry.details == {"type": p.type, "retrying": False}


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_provider_down_never_blocks_the_removal_and_the_retry_revokes_later(
    deps: Deps, request: pytest.FixtureRequest, sent: list[dict[str, Any]], name: str
) -> None:
    p = provider(name, request)
    account_id, revocations = connected(deps, p)
    with deps.db.unit_of_work() as s:
        stored = s.get(Account, uuid.UUID(account_id))
        assert stored is not None
        opened = deps.vault.decrypt(stored.credentials).values()
        secrets = [v for v in opened if isinstance(v, str) and len(v) > 8]
    down(p, account_id, deps)

    result = remove(deps, account_id=account_id, request_id=f"rm-{name}")

    assert result["status"] == "succeeded", result
    assert result["revoked"] is False
    assert "by hand" in result["message"]
    assert revocations() == 0
    with deps.db.unit_of_work() as s:
        assert s.get(Account, uuid.UUID(account_id)) is None
    [first] = revoked_entries(deps, account_id)
    assert (first.outcome, first.details["retrying"]) == (False, True)

    # Queued once, after the commit, with the credentials sealed: none of them in the clear.
    [order] = sent
    assert (order["type"], order["account_id"]) == (p.type, account_id)
    assert (order["job_id"], order["request_id"]) == (result["job_id"], f"rm-{name}")
    assert not any(secret in json.dumps(order) for secret in secrets)

    p.sim.script.clear()  # the provider is back
    assert revocation.retry(deps, order, last=False) is True
    assert revocations() == 1
    _, final = revoked_entries(deps, account_id)
    assert (final.outcome, final.cause, final.actor) == (True, "job", ADMIN)
    assert (final.job_id, final.request_id) == (result["job_id"], f"rm-{name}")
    assert final.details == {"type": p.type, "retried": True}


def test_a_retry_while_still_down_tries_again_and_the_last_one_records_the_failure(
    deps: Deps, request: pytest.FixtureRequest, sent: list[dict[str, Any]]
) -> None:
    p = provider("hubspot", request)
    account_id, revocations = connected(deps, p)
    down(p, account_id, deps)
    remove(deps, account_id=account_id)
    [order] = sent

    down(p, account_id, deps)
    with pytest.raises(TemporaryFailure):
        revocation.retry(deps, order, last=False)
    assert len(revoked_entries(deps, account_id)) == 1  # nothing final yet: no entry

    down(p, account_id, deps)
    assert revocation.retry(deps, order, last=True) is False
    assert [e.outcome for e in revoked_entries(deps, account_id)] == [False, False]
    assert revocations() == 0


def test_a_removal_that_rolls_back_queues_no_retry(
    deps: Deps, request: pytest.FixtureRequest, sent: list[dict[str, Any]]
) -> None:
    p = provider("fortnox", request)
    account_id, revocations = connected(deps, p)
    link(deps, integration_id="wf-1", account_id=account_id)
    down(p, account_id, deps)
    result = remove(deps, account_id=account_id)
    assert (result["status"], result["reason"]) == ("rejected", "in_use")
    assert sent == []
    assert revoked_entries(deps, account_id) == []


def test_a_malformed_order_revokes_nothing(deps: Deps) -> None:
    assert revocation.retry(deps, {"type": "nope", "account_id": "x"}, last=True) is False
    order = {"type": "fortnox", "account_id": str(uuid.uuid4()), "credentials_sealed": "junk"}
    assert revocation.retry(deps, order, last=True) is False  # unreadable: recorded as failed
    with deps.db.unit_of_work() as s:
        [entry] = s.scalars(select(AuditEntry)).all()
    assert (entry.action, entry.outcome) == ("credentials.revoked", False)


def test_the_backoff_doubles_and_honours_retry_after() -> None:
    waits = [countdown(n) for n in range(MAX_RETRIES)]
    assert waits == sorted(waits)
    assert waits[1] == 2 * waits[0]
    assert countdown(0, retry_after=10_000) == 10_000
