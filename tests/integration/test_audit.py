"""The audit trail: each change leaves one entry, with its actor and cause, in the change's own
transaction (a change that rolls back leaves none); read by admins and collaborators of the
organization only, newest first, over the read API and the CLI."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr
from sqlalchemy import select
from starlette.testclient import TestClient

from connectors.stripe import parse_stripe
from models import Account, AuditEntry, Database
from tests.fixtures.ingest import stripe_delivery, stripe_event
from tests.integration.jobs import ADMIN, COLLABORATOR, add, link, remove, unlink, update
from tests.simulators.stripe import StripeSimulator
from worker import operator
from worker.api.app import create_app
from worker.service import inbox
from worker.service.checks.probe import refresh_credentials
from worker.service.deps import Deps
from worker.service.inbox.operator import replay
from worker.settings import Settings
from worker.tasks.table import run_as_job

TOKEN = "audit-read-token"
REDIRECT = "https://app.standout.test/connect/callback"


def trail(deps: Deps, **where: Any) -> list[AuditEntry]:
    """Every entry, oldest first, or those whose columns equal `where`."""
    query = select(AuditEntry).order_by(AuditEntry.occurred_at, AuditEntry.id)
    for column, value in where.items():
        query = query.where(getattr(AuditEntry, column) == value)
    with deps.db.unit_of_work() as s:
        return list(s.scalars(query))


def stripe_account(deps: Deps, sim: StripeSimulator, org: str = "org-1") -> tuple[str, str]:
    _, key = sim.add_account("Audit AB")
    result = add(deps, org_id=org, credentials={"api_key": key})
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"]), key


def test_each_job_leaves_one_entry_with_its_actor_cause_and_job(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    _, key = stripe_sim.add_account("Audit AB")
    added = add(deps, credentials={"api_key": key}, request_id="add-1")
    account_id = added["account"]["id"]
    renamed = update(deps, account_id=account_id, name="Renamed", actor=COLLABORATOR)
    again = update(deps, account_id=account_id, credentials={"api_key": key})
    nothing = update(deps, account_id=account_id, name="Renamed")
    linked = link(deps, integration_id="wf-1", account_id=account_id)
    unlinked = unlink(deps, integration_id="wf-1", account_id=account_id)
    checked = run_as_job(deps, "accounts.check", {"account_id": account_id})
    removed = remove(deps, account_id=account_id)
    assert nothing["changed"] == []

    entries = trail(deps)
    said = [(e.action, e.actor, e.cause, e.job_id) for e in entries]
    assert said == [
        ("account.added", ADMIN, "job", added["job_id"]),
        ("account.updated", COLLABORATOR, "job", renamed["job_id"]),
        ("account.reconnected", ADMIN, "job", again["job_id"]),
        ("integration.linked", None, "job", linked["job_id"]),
        ("integration.unlinked", None, "job", unlinked["job_id"]),
        ("account.checked", None, "job", checked["job_id"]),
        # An API key is its owner's to roll: the provider offers no revocation (null).
        ("credentials.revoked", ADMIN, "job", removed["job_id"]),
        ("account.removed", ADMIN, "job", removed["job_id"]),
    ]
    assert {str(e.account_id) for e in entries} == {account_id}
    assert {e.org_id for e in entries} == {"org-1"}
    assert entries[0].request_id == "add-1"
    assert entries[1].details == {"changed": ["name"]}
    assert entries[2].details == {"changed": ["credentials"]}
    assert entries[3].details == {"integration_id": "wf-1"}
    assert entries[5].outcome == "passed"
    assert entries[6].outcome is None
    assert key not in json.dumps([e.details for e in entries])


def test_a_refused_or_rolled_back_change_leaves_no_entry(
    deps: Deps, stripe_sim: StripeSimulator
) -> None:
    account_id, _ = stripe_account(deps, stripe_sim)
    link(deps, integration_id="wf-1", account_id=account_id)
    before = len(trail(deps))

    in_use = remove(deps, account_id=account_id)
    assert (in_use["status"], in_use["reason"]) == ("rejected", "in_use")
    unconfirmed = add(deps, credentials={"api_key": "sk_test_not_a_key_at_all"})
    assert unconfirmed["status"] == "rejected"
    forbidden = update(
        deps, account_id=account_id, name="No", actor={"user_id": "r", "role": "reader"}
    )
    assert (forbidden["status"], forbidden["reason"]) == ("rejected", "forbidden")

    assert len(trail(deps)) == before


def test_a_refresh_is_audited_with_cause_refresh(
    deps: Deps, request: pytest.FixtureRequest
) -> None:
    sim = request.getfixturevalue("hubspot_sim")
    code = sim.issue_code(sim.add_portal(), REDIRECT)
    added = add(deps, type="hubspot", credentials={"code": code, "redirect_uri": REDIRECT})
    account_id = uuid.UUID(added["account"]["id"])
    with deps.db.unit_of_work() as s:
        account = s.get(Account, account_id)
        assert account is not None
        s.expunge(account)
    connector = deps.connectors.get("hubspot")
    rejected = account.credentials_version
    deps.connectors.run(refresh_credentials(deps, account, connector, rejected=rejected))

    [entry] = trail(deps, action="credentials.refreshed")
    assert (entry.account_id, entry.cause, entry.actor, entry.org_id) == (
        account_id,
        "refresh",
        None,
        "org-1",
    )
    assert (entry.job_id, entry.details) == (None, {"why": "rejected"})


def test_operator_rotation_and_replay_are_audited_with_cause_operator(
    deps: Deps, stripe_sim: StripeSimulator, db: Database
) -> None:
    first, _ = stripe_account(deps, stripe_sim)
    second, _ = stripe_account(deps, stripe_sim, org="org-2")
    assert operator.rotate_keys(deps) == 2
    rotated = trail(deps, action="credentials.rotated")
    assert sorted((str(e.account_id), e.org_id) for e in rotated) == sorted(
        [(first, "org-1"), (second, "org-2")]
    )
    assert {(e.cause, e.job_id) for e in rotated} == {("operator", None)}

    body, _ = stripe_delivery(stripe_event("invoice.paid", account="acct_nowhere"))
    with db.engine.begin() as conn:
        [event] = inbox.store_events(conn, [inbox.Incoming(parse_stripe(body))])
    inbox.process_events(db, [event.id])
    with db.unit_of_work() as s:
        replay(s, str(event.id))
    [entry] = trail(deps, action="event.replayed")
    assert (entry.cause, entry.org_id, entry.account_id) == ("operator", None, None)
    assert entry.details == {"event_id": str(event.id), "provider": "stripe", "was": "unroutable"}


# -- reading ----------------------------------------------------------------------------------


@pytest.fixture
def api(deps: Deps) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(service_token=SecretStr(TOKEN)), deps)) as client:
        yield client


def read(api: TestClient, org: str, role: str = "admin", **params: str) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Actor-Id": "u-1", "X-Actor-Role": role}
    return api.get(f"/api/v1/orgs/{org}/audit", headers=headers, params=params)


def test_the_read_api_serves_its_own_organization_newest_first_to_admins_and_collaborators(
    api: TestClient, deps: Deps, stripe_sim: StripeSimulator
) -> None:
    mine, _ = stripe_account(deps, stripe_sim)
    other_of_mine, _ = stripe_account(deps, stripe_sim)
    theirs, _ = stripe_account(deps, stripe_sim, org="org-2")
    update(deps, account_id=mine, name="Later")

    for role in ("admin", "collaborator"):
        answer = read(api, "org-1", role)
        assert answer.status_code == 200
        entries = answer.json()["entries"]
        assert [e["action"] for e in entries] == [
            "account.updated",
            "account.added",
            "account.added",
        ]
        assert [e["account_id"] for e in entries] == [mine, other_of_mine, mine]
        assert set(entries[0]) == {
            *("id", "occurred_at", "action", "actor", "cause", "account_id"),
            *("job_id", "request_id", "outcome", "details"),
        }
    refused = read(api, "org-1", "reader")
    assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")

    one = read(api, "org-1", account_id=mine).json()["entries"]
    assert [e["action"] for e in one] == ["account.updated", "account.added"]
    # Another organization's account is not in this organization's trail.
    assert read(api, "org-1", account_id=theirs).json()["entries"] == []
    assert [e["account_id"] for e in read(api, "org-2").json()["entries"]] == [theirs]
    assert read(api, "org-1", account_id="not-a-uuid").status_code == 400
    assert read(api, "bad org!").status_code == 400


def test_the_cli_lists_the_trail_as_json(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    encryption_key: str,
    deps: Deps,
    stripe_sim: StripeSimulator,
    tmp_path: Any,
) -> None:
    from click.testing import CliRunner

    from worker.cli import main
    from worker.settings import get_settings

    mine, _ = stripe_account(deps, stripe_sim)
    stripe_account(deps, stripe_sim, org="org-2")
    for name, value in {
        "CONNECTIONS_DATABASE_URL": database_url,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_VAR_DIR": str(tmp_path),
        "CONNECTIONS_LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    structlog_config, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        ran = CliRunner().invoke(main, ["audit", "list", "--org", "org-1", "--json"])
        text = CliRunner().invoke(main, ["audit", "list", "--org", "org-1", "--account", mine])
    finally:  # the command configured the process's logging: put it back
        get_settings.cache_clear()
        structlog.configure(**structlog_config)
        root.handlers[:], root.level = handlers, level
    assert ran.exit_code == 0, ran.output
    [entry] = json.loads(ran.stdout)["entries"]
    assert (entry["action"], entry["account_id"], entry["actor"]) == ("account.added", mine, ADMIN)
    assert text.exit_code == 0, text.output
    assert "account.added" in text.stdout
    assert mine in text.stdout
