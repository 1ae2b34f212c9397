"""Provider incidents: an outage (most answers 503, or no answer in time) opens one incident and no
per-account error, a 401 during it is still that account's error, checks of the provider back
off, and the incident ends, once, when the provider recovers. An incident that starts takes the
outage errors its window opened (checks that ran before it was known), and only those."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from models import Account, AccountError, OutboxEvent, StatusChange, utc_now
from tests.fixtures.checks import (
    CADENCE,
    CheckedStripe,
    checker,
    count,
    incidents,
    insert_stripe_accounts,
    make_due,
    run_due,
)
from tests.fixtures.connectors import stored
from worker.service.deps import Deps
from worker.vault import Vault


def incident_events(deps: Deps) -> list[OutboxEvent]:
    with deps.db.unit_of_work() as session:
        rows = list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.type.like("provider.incident_%"))
                .order_by(OutboxEvent.seq)
            )
        )
        session.expunge_all()
        return rows


@pytest.mark.parametrize("outage", [503, "timeout"])
def test_outage_opens_one_incident_and_no_account_errors_until_recovery(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, outage: int | str
) -> None:
    deps = check_deps
    accounts = insert_stripe_accounts(deps.db, vault, stripe_checks, 24)
    [(revoked_key_account, key)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1)
    check = checker(deps)
    make_due(deps)
    run_due(deps, check)  # all healthy: a baseline of passing checks

    stripe_checks.roll_key(key)  # this one's key is rejected (401) whatever the outage
    stripe_checks.outage, stripe_checks.outage_share = outage, 0.9
    stripe_checks.hang_seconds = 1.0  # past the checker's 0.5 s timeout
    for _ in range(3):
        last_round = utc_now()  # next checks count from each check's time, at or after this
        make_due(deps)
        run_due(deps, check, batch_size=10)

    [incident] = incidents(deps)
    assert incident.provider == "stripe"
    assert incident.ended_at is None
    assert incident.failed_checks > 0
    expected_code = "timeout" if outage == "timeout" else "provider_unavailable"
    assert expected_code in incident.reason
    # Accounts keep their status, no error is opened on them...
    assert count(deps, StatusChange, StatusChange.account_id != revoked_key_account) == 0
    assert count(deps, AccountError, AccountError.account_id != revoked_key_account) == 0
    # ...but a 401 is still that account's own error.
    with deps.db.unit_of_work() as session:
        revoked = session.get(Account, revoked_key_account)
        assert revoked is not None
        assert revoked.status == "error"
        codes = session.scalars(
            select(AccountError.code).where(AccountError.account_id == revoked_key_account)
        ).all()
        assert codes == ["credentials_invalid"]
        # Checks of the provider back off to the interval instead of retrying sooner.
        soonest = session.scalar(
            select(func.min(Account.next_check_at)).where(Account.status == "connected")
        )
    assert soonest is not None
    assert soonest - last_round > timedelta(seconds=CADENCE.interval * 0.85)
    [started] = incident_events(deps)
    assert started.type == "provider.incident_started"
    assert started.org_id == "*"
    assert started.account_id is None
    assert started.data["id"] == str(incident.id)

    stripe_checks.outage = None  # the provider recovers
    make_due(deps)
    run_due(deps, check, batch_size=10)
    make_due(deps)
    run_due(deps, check, batch_size=10)

    [ended] = incidents(deps)
    assert ended.ended_at is not None
    assert ended.failed_checks >= incident.failed_checks
    assert [e.type for e in incident_events(deps)] == [
        "provider.incident_started",
        "provider.incident_ended",
    ]
    assert incident_events(deps)[1].data["failed_checks"] == ended.failed_checks
    ids = [a for a, _ in accounts]
    with deps.db.unit_of_work() as session:
        statuses = set(session.scalars(select(Account.status).where(Account.id.in_(ids))))
    assert statuses == {"connected"}
    assert count(deps, AccountError, AccountError.account_id != revoked_key_account) == 0


def test_one_failing_account_among_healthy_ones_is_no_incident(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 15)
    sick, key = made[0]
    stripe_checks.outage, stripe_checks.down_keys = 503, {key}
    check = checker(deps)
    for _ in range(3):
        make_due(deps)
        run_due(deps, check)
    assert incidents(deps) == []
    with deps.db.unit_of_work() as session:
        account = session.get(Account, sick)
        assert account is not None
        assert account.status == "degraded"
    assert count(deps, AccountError) == 1


def test_incident_is_not_reopened_by_the_failures_that_made_it(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe
) -> None:
    deps = check_deps
    insert_stripe_accounts(deps.db, vault, stripe_checks, 12)
    check = checker(deps)
    stripe_checks.outage = 503
    make_due(deps)
    run_due(deps, check)
    stripe_checks.outage = None
    for _ in range(3):
        make_due(deps)
        run_due(deps, check)
    [incident] = incidents(deps)
    assert incident.ended_at is not None
    assert count(deps, AccountError) == 0


def test_an_incident_takes_the_outage_errors_opened_in_its_window(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, check_account: Any
) -> None:
    deps = check_deps
    due = insert_stripe_accounts(deps.db, vault, stripe_checks, 12, next_check_at=utc_now())
    later = utc_now() + timedelta(hours=1)
    [(early, early_key), (old, old_key), (limited, limited_key)] = insert_stripe_accounts(
        deps.db, vault, stripe_checks, 3, next_check_at=later
    )
    # Before the outage shows, jobs find three accounts failing and, nothing else failing yet,
    # record them: one opened its error a while ago, one is also rate limited.
    stripe_checks.outage, stripe_checks.down_keys = 503, {early_key, old_key, limited_key}
    for account_id in (early, old, limited):
        assert check_account(deps, str(account_id))["incident"] is False
    with deps.db.unit_of_work() as session:
        session.execute(
            update(AccountError)
            .where(AccountError.account_id == old)
            .values(first_occurred_at=utc_now() - timedelta(minutes=5))
        )
        session.add(
            AccountError(
                account_id=limited,
                code="rate_limited",
                message="429",
                source="check",
                first_occurred_at=utc_now(),
                last_occurred_at=utc_now(),
            )
        )
    stripe_checks.down_keys = None  # now Stripe fails everyone

    [report] = run_due(deps, checker(deps))

    [incident] = incidents(deps)
    assert report["incident"] == str(incident.id)
    assert incident.failed_checks == 12 + 2  # the batch's, and the two errors it took
    account, errors = stored(deps, str(early))
    assert (account.status, errors) == ("connected", [])
    with deps.db.unit_of_work() as session:
        [reason] = session.scalars(
            select(StatusChange.reason).where(
                StatusChange.account_id == early, StatusChange.to_status == "connected"
            )
        ).all()
    assert f"incident {incident.id}" in reason
    account, errors = stored(deps, str(limited))  # its outage error taken, the 429 its own
    assert (account.status, [e.code for e in errors]) == ("degraded", ["rate_limited"])
    account, errors = stored(deps, str(old))  # opened before the window: its own
    assert (account.status, [e.code for e in errors]) == ("degraded", ["provider_unavailable"])
    for account_id, _ in due:
        account, errors = stored(deps, str(account_id))
        assert (account.status, errors) == ("connected", [])
    [started] = incident_events(deps)
    assert started.data["failed_checks"] == 2


def test_incidents_list_in_the_cli(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, encryption_key: str
) -> None:
    deps = check_deps
    insert_stripe_accounts(deps.db, vault, stripe_checks, 12)
    stripe_checks.outage = 503
    make_due(deps)
    run_due(deps, checker(deps))
    [incident] = incidents(deps)
    env = {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": deps.db.url,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
    }
    listed = subprocess.run(
        [sys.executable, "-m", "worker.cli", "incidents", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [row] = json.loads(listed.stdout)["incidents"]  # the read API's shape
    assert row["id"] == str(incident.id)
    assert row["provider"] == "stripe"
    assert row["ended_at"] is None
    plain = subprocess.run(
        [sys.executable, "-m", "worker.cli", "incidents", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "stripe" in plain.stdout
    assert "OPEN" in plain.stdout
    assert uuid.UUID(row["id"])
