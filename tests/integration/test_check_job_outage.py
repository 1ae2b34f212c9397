"""One truth about an outage: `accounts.check` jobs during a Stripe outage (the simulator's outage
mode, real PostgreSQL) treat it as the scheduled checks do. The failure is counted on the
provider's incident, started by the jobs themselves when the recent checks say so, the accounts
keep their status and get no error, and the job's result says the provider is failing. This
holds when the jobs run in fresh worker processes that have seen nothing else (each judges by
what the others recorded, and the incident takes the errors the first few opened). With no sign
of an outage, a job still records what it found."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors import ConnectorSettings
from models import AccountError, OutboxEvent, StatusChange, utc_now
from tests.fixtures.checks import (
    CheckedStripe,
    at_once,
    check_connectors,
    checker,
    count,
    incidents,
    insert_stripe_accounts,
    make_due,
    run_due,
)
from tests.fixtures.connectors import stored
from worker.service.checks import check_now
from worker.service.deps import Deps
from worker.service.incidents import recent_for
from worker.service.jobs import run_job
from worker.service.outages import IncidentPolicy, RecentChecks
from worker.vault import Vault

JOBS = 12
POLICY = IncidentPolicy()


def scheduled_and_job_accounts(
    deps: Deps, vault: Vault, sim: CheckedStripe, scheduled: int
) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """`scheduled` accounts due now, and JOBS accounts the schedule leaves alone (not due)."""
    due = insert_stripe_accounts(deps.db, vault, sim, scheduled, next_check_at=utc_now())
    asked = insert_stripe_accounts(
        deps.db, vault, sim, JOBS, next_check_at=utc_now() + timedelta(hours=1)
    )
    return [a for a, _ in due], [a for a, _ in asked]


def assert_untouched(deps: Deps, account_ids: list[uuid.UUID]) -> None:
    """Still `connected`, with no error and no change of status."""
    for account_id in account_ids:
        account, errors = stored(deps, str(account_id))
        assert (account.status, errors) == ("connected", [])
    assert count(deps, StatusChange, StatusChange.account_id.in_(account_ids)) == 0
    assert count(deps, AccountError, AccountError.account_id.in_(account_ids)) == 0


def test_twelve_concurrent_check_jobs_during_an_incident_leave_the_accounts_connected(
    check_deps: Deps,
    check_settings: ConnectorSettings,
    vault: Vault,
    stripe_checks: CheckedStripe,
    check_account: Any,
) -> None:
    deps = check_deps
    _, asked = scheduled_and_job_accounts(deps, vault, stripe_checks, 12)
    stripe_checks.outage = 503
    run_due(deps, checker(deps))  # the scheduled checks see the outage and open the incident
    [incident] = incidents(deps)
    counted = incident.failed_checks

    results = at_once(
        deps,
        lambda: check_connectors(check_settings),
        lambda own, account_id: dict(check_account(own, str(account_id))),
        asked,
    )

    for result in results:
        assert result["status"] == "succeeded", result
        assert (result["checked"], result["passed"]) == (True, False)
        assert (result["error_code"], result["incident"]) == ("provider_unavailable", True)
        assert result["incident_id"] == str(incident.id)
        assert "failing for many accounts" in result["message"]
        assert result["account"]["status"] == "connected"
    assert_untouched(deps, asked)
    [after] = incidents(deps)
    assert after.id == incident.id
    assert after.failed_checks == counted + JOBS


def test_check_jobs_while_the_provider_is_suspect_are_held_and_start_the_incident(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, check_account: Any
) -> None:
    deps = check_deps
    scheduled, asked = scheduled_and_job_accounts(deps, vault, stripe_checks, 12)
    check = checker(deps)
    assert check.recent is recent_for(deps.db)  # what the jobs judge by, in this process
    run_due(deps, check)  # twelve passes: the provider was fine
    stripe_checks.outage = 503
    make_due(deps, scheduled[:4])
    run_due(deps, check)  # four of sixteen failing: suspect, no incident yet
    assert incidents(deps) == []

    results = [check_account(deps, str(account_id)) for account_id in asked]

    # Each job adds its failure to the same recent checks: held while the provider is suspect,
    # counted on the incident once half the recent checks fail (the eighth job starts it).
    assert [r["incident"] for r in results] == [False] * 7 + [True] * 5
    for result in results:
        assert (result["passed"], result["error_code"]) == (False, "provider_unavailable")
        assert result["account"]["status"] == "connected"
    assert "not blamed on this account" in results[0]["message"]
    assert_untouched(deps, asked)
    [incident] = incidents(deps)
    assert incident.ended_at is None
    assert incident.failed_checks == 5
    started = count(deps, OutboxEvent, OutboxEvent.type == "provider.incident_started")
    assert started == 1


def test_a_check_job_with_no_sign_of_an_outage_records_the_accounts_failure(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, check_account: Any
) -> None:
    deps = check_deps
    scheduled, asked = scheduled_and_job_accounts(deps, vault, stripe_checks, 12)
    run_due(deps, checker(deps))  # the provider answers everyone else
    sick = asked[0]
    account, _ = stored(deps, str(sick))
    key = deps.vault.decrypt(account.credentials)["api_key"]
    stripe_checks.outage, stripe_checks.down_keys = 503, {key}

    result = check_account(deps, str(sick))

    assert (result["passed"], result["error_code"], result["incident"]) == (
        False,
        "provider_unavailable",
        False,
    )
    account, errors = stored(deps, str(sick))
    assert account.status == "degraded"
    assert [e.code for e in errors] == ["provider_unavailable"]
    assert incidents(deps) == []


def check_job(deps: Deps, account_id: uuid.UUID, recent: RecentChecks) -> dict[str, Any]:
    """An `accounts.check` job as the task runs it, in a worker process whose recent checks are
    `recent`."""
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="accounts.check",
        request_id=None,
        org_id=None,
        work=lambda session: check_now(session, deps, account_id, recent=recent),
    )


def started_events(deps: Deps) -> int:
    return count(deps, OutboxEvent, OutboxEvent.type == "provider.incident_started")


def assert_connected_with_one_incident(
    deps: Deps, asked: list[uuid.UUID], results: list[dict[str, Any]]
) -> uuid.UUID:
    """Every account `connected` with no open error, one open incident (started once) that
    counted every job's failure, and each job whose failure it took says so. Returns its id."""
    [incident] = incidents(deps)
    assert (incident.provider, incident.ended_at) == ("stripe", None)
    assert started_events(deps) == 1
    for account_id in asked:
        account, errors = stored(deps, str(account_id))
        assert (account.status, errors) == ("connected", [])
    assert incident.failed_checks == JOBS  # taken by the incident, or counted on it
    for result in results:
        assert result["status"] == "succeeded", result
        assert (result["passed"], result["error_code"]) == (False, "provider_unavailable")
        if result["incident"]:
            assert result["incident_id"] == str(incident.id)
            assert "failing for many accounts" in result["message"]
            assert result["account"]["status"] == "connected"
    # Only checks that ran before the incident was known recorded anything (fewer than it takes
    # to tell an outage); the incident took what they opened.
    assert sum(not r["incident"] for r in results) < POLICY.min_checks
    return incident.id


def test_an_outage_seen_through_check_jobs_leaves_accounts_connected_with_one_incident(
    check_deps: Deps,
    check_settings: ConnectorSettings,
    vault: Vault,
    stripe_checks: CheckedStripe,
    check_account: Any,
) -> None:
    deps = check_deps
    asked = [a for a, _ in insert_stripe_accounts(deps.db, vault, stripe_checks, JOBS)]
    assert recent_for(deps.db).since("stripe", utc_now(), None) == []  # a fresh process
    assert incidents(deps) == []
    stripe_checks.outage = 503  # every call answered 503

    results = at_once(
        deps,
        lambda: check_connectors(check_settings),
        lambda own, account_id: dict(check_account(own, str(account_id))),
        asked,
    )

    assert_connected_with_one_incident(deps, asked, results)


@pytest.mark.parametrize("processes", [2, JOBS], ids=["two-processes", "a-process-each"])
def test_check_jobs_spread_over_fresh_worker_processes_during_an_outage_agree(
    check_deps: Deps,
    check_settings: ConnectorSettings,
    vault: Vault,
    stripe_checks: CheckedStripe,
    processes: int,
) -> None:
    deps = check_deps
    asked = [a for a, _ in insert_stripe_accounts(deps.db, vault, stripe_checks, JOBS)]
    seen = [RecentChecks(POLICY) for _ in range(processes)]  # each process's own, empty
    stripe_checks.outage = 503

    results = at_once(
        deps,
        lambda: check_connectors(check_settings),
        lambda own, job: check_job(own, job[1], seen[job[0] % processes]),
        list(enumerate(asked)),
    )

    incident_id = assert_connected_with_one_incident(deps, asked, results)
    recorded = [uuid.UUID(r["account"]["id"]) for r in results if not r["incident"]]
    with deps.db.unit_of_work() as session:
        changes = session.execute(
            select(StatusChange.account_id, StatusChange.to_status, StatusChange.reason)
            .where(StatusChange.account_id.in_(asked))
            .order_by(StatusChange.id)
        ).all()
        errors = session.execute(
            select(AccountError.account_id, AccountError.code).where(
                AccountError.resolved_at.is_not(None)
            )
        ).all()
    # Each account a job recorded went degraded, then connected again by the incident...
    for account_id in recorded:
        mine = [(to, reason) for a, to, reason in changes if a == account_id]
        assert [to for to, _ in mine] == ["degraded", "connected"]
        assert f"incident {incident_id}" in mine[1][1]
        assert "incident took the failure" in mine[1][1]
    # ...its error resolved; the accounts whose failure the incident counted were not touched.
    assert sorted(errors) == sorted((a, "provider_unavailable") for a in recorded)
    assert {a for a, _, _ in changes} == set(recorded)


@pytest.mark.parametrize("sick", [1, 3])
def test_jobs_in_fresh_processes_still_degrade_accounts_failing_alone(
    check_deps: Deps,
    check_settings: ConnectorSettings,
    vault: Vault,
    stripe_checks: CheckedStripe,
    sick: int,
) -> None:
    """A few accounts answered 5xx while the provider answers the rest: their own trouble, said
    at once by a job, however little the process running it has seen."""
    deps = check_deps
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, JOBS)
    stripe_checks.outage, stripe_checks.down_keys = 503, {key for _, key in made[:sick]}

    results = at_once(
        deps,
        lambda: check_connectors(check_settings),
        lambda own, account_id: check_job(own, account_id, RecentChecks(POLICY)),
        [a for a, _ in made],
    )

    assert [r["passed"] for r in results] == [False] * sick + [True] * (JOBS - sick)
    for result in results[:sick]:
        assert (result["error_code"], result["incident"]) == ("provider_unavailable", False)
    for n, (account_id, _) in enumerate(made):
        account, errors = stored(deps, str(account_id))
        if n < sick:
            assert account.status == "degraded"
            assert [e.code for e in errors] == ["provider_unavailable"]
        else:
            assert (account.status, errors) == ("connected", [])
    assert incidents(deps) == []
