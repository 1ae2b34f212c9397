"""Reconnecting a broken account through a connect session, for every OAuth provider: the same
upstream account (shop, Stripe account, Fortnox company, HubSpot portal) replaces the credentials,
resolves the errors and returns the account to `connected`, keeping its id, integrations and
history; another upstream account is `identity_mismatch` and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from connectors import ErrorCode
from models import Account, AccountError, AccountStatus, Database, IntegrationRef, StatusChange
from tests.fixtures.ingest import make_account
from tests.integration.jobs import link
from tests.integration.test_connect_sessions import (
    OAUTH_TYPES,
    READER,
    RETURN_PREFIX,
    Browser,
    Ingest,
    Upstreams,
    accounts,
    assert_nothing_secret,
    landed,
    serving,
    start,
)
from tests.simulators.fortnox import FortnoxSimulator
from tests.simulators.hubspot import HubSpotSimulator
from tests.simulators.shopify import ShopifySimulator
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps
from worker.service.records import open_error, set_status


@pytest.fixture
def upstreams(
    shopify_sim: ShopifySimulator,
    stripe_sim: StripeSimulator,
    fortnox_sim: FortnoxSimulator,
    hubspot_sim: HubSpotSimulator,
) -> Upstreams:
    return Upstreams(shopify_sim, stripe_sim, fortnox_sim, hubspot_sim)


@pytest.fixture
def ingest(database_url: str, deps: Deps) -> Iterator[Ingest]:
    with serving(database_url, deps) as served:
        yield served


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused reconnect must leave as it was."""

    credentials: bytes
    credentials_version: int
    status: str
    connection: dict[str, Any]
    meta: dict[str, Any]
    open_errors: list[tuple[str, int]]
    history: int


def snapshot(db: Database, account_id: str) -> Snapshot:
    with db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        errors = s.scalars(
            select(AccountError).where(
                AccountError.account_id == account.id, AccountError.resolved_at.is_(None)
            )
        )
        history = s.scalars(select(StatusChange).where(StatusChange.account_id == account.id))
        return Snapshot(
            account.credentials,
            account.credentials_version,
            account.status,
            account.connection,
            account.meta,
            sorted((e.code, e.occurrences) for e in errors),
            len(list(history)),
        )


def connected(ingest: Ingest, upstreams: Upstreams, type_: str) -> tuple[str, str]:
    """An account added through a session; (its id, its upstream identity)."""
    identity, extra = upstreams.new(type_)
    session = start(ingest, type_, extra)
    assert Browser().connect(session["authorize_url"]).status_code == 200
    view = ingest.api.read("org-1", session["id"]).json()
    assert view["status"] == "succeeded", view
    return view["account"]["id"], identity


def broken(db: Database, account_id: str) -> None:
    """What a check that met rejected credentials records: an open error, status `error`."""
    with db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        open_error(s, account, ErrorCode.CREDENTIALS_INVALID, "the token was refused", "check")
        set_status(s, account, AccountStatus.ERROR, "credentials_invalid", "check")


def reconnect(
    ingest: Ingest, type_: str, account_id: str, **body: Any
) -> tuple[dict[str, Any], Browser, Any]:
    answer = ingest.api.create(
        "org-1", {"type": type_, "account_id": account_id, "return_url": RETURN_PREFIX, **body}
    )
    assert answer.status_code == 201, answer.text
    session = answer.json()
    browser = Browser()
    back = browser.connect(session["authorize_url"])
    assert_nothing_secret(back, browser.code())
    return session, browser, back


@pytest.mark.parametrize("type_", OAUTH_TYPES)
def test_a_reconnect_with_the_same_identity_resolves_the_errors(
    type_: str, ingest: Ingest, upstreams: Upstreams, db: Database, deps: Deps
) -> None:
    account_id, identity = connected(ingest, upstreams, type_)
    assert link(deps, integration_id="flow-1", account_id=account_id)["status"] == "succeeded"
    broken(db, account_id)
    before = snapshot(db, account_id)
    assert before.status == "error"

    upstreams.again(type_, identity)
    session, _, back = reconnect(ingest, type_, account_id)
    assert landed(back) == {"session": session["id"], "status": "succeeded"}
    view = ingest.api.read("org-1", session["id"]).json()
    assert (view["status"], view["account"]["id"]) == ("succeeded", account_id)
    assert ingest.sent == ["accounts.add", "accounts.update"]

    after = snapshot(db, account_id)
    assert after.status == "connected"
    assert after.open_errors == []
    assert after.credentials != before.credentials
    assert after.credentials_version == before.credentials_version + 1
    assert after.history == before.history + 1  # error -> connected, on top of the history
    (account,) = accounts(db)
    assert str(account.id) == account_id
    assert deps.connectors.get(type_).identity(account.connection, account.meta) == identity
    with db.unit_of_work() as s:
        refs = list(s.scalars(select(IntegrationRef)))
        assert [(str(r.account_id), r.integration_id) for r in refs] == [(account_id, "flow-1")]
        resolved = s.scalars(select(AccountError).where(AccountError.resolved_at.is_not(None)))
        assert [e.code for e in resolved] == ["credentials_invalid"]


@pytest.mark.parametrize("type_", OAUTH_TYPES)
def test_a_reconnect_to_another_upstream_account_is_identity_mismatch(
    type_: str, ingest: Ingest, upstreams: Upstreams, db: Database
) -> None:
    account_id, identity = connected(ingest, upstreams, type_)
    broken(db, account_id)
    before = snapshot(db, account_id)

    other, extra = upstreams.new(type_)
    assert other != identity
    session, _, back = reconnect(ingest, type_, account_id, **extra)
    assert landed(back) == {"session": session["id"], "status": "rejected"}
    view = ingest.api.read("org-1", session["id"]).json()
    assert (view["status"], view["reason"], view["account"]) == (
        "rejected",
        "identity_mismatch",
        None,
    )
    assert identity in view["message"]
    assert snapshot(db, account_id) == before  # same credentials, status, errors, history
    assert len(accounts(db)) == 1


def test_an_account_with_no_identity_yet_takes_the_one_it_is_reconnected_to(
    ingest: Ingest, upstreams: Upstreams, db: Database, deps: Deps
) -> None:
    old = make_account(deps.db, deps.vault, "fortnox", org_id="org-1", status="error")
    identity, _ = upstreams.new("fortnox")
    session, _, back = reconnect(ingest, "fortnox", str(old.id))
    assert landed(back)["status"] == "succeeded"
    (account,) = accounts(db)
    assert account.id == old.id
    assert account.status == "connected"
    assert deps.connectors.get("fortnox").identity(account.connection, account.meta) == identity


def test_a_reconnect_names_an_account_of_the_org_and_type(
    ingest: Ingest, upstreams: Upstreams, db: Database, deps: Deps
) -> None:
    account_id, _ = connected(ingest, upstreams, "hubspot")
    elsewhere = make_account(deps.db, deps.vault, "hubspot", org_id="org-2")
    for body in (
        {"type": "fortnox", "account_id": account_id},
        {"type": "hubspot", "account_id": str(elsewhere.id)},
        {"type": "hubspot", "account_id": str(uuid.uuid4())},
    ):
        answer = ingest.api.create("org-1", body)
        assert answer.status_code == 404, body
        assert answer.json()["error"] == "not_found"
    refused = ingest.api.create("org-1", {"type": "hubspot", "account_id": account_id}, READER)
    assert refused.status_code == 403
