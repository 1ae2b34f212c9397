"""Credentials the vault cannot decrypt (a key dropped from CONNECTIONS_ENCRYPTION_KEYS too early
during a rotation): the account gets the error `credentials_unreadable` once, with the operator's
fix in its message, is checked as rarely as other accounts that need a person, is logged once
rather than every tick, and recovers at the next check once the key is back."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from models import Account, AccountError, StatusChange, utc_now
from tests.fixtures.checks import (
    CADENCE,
    CheckedStripe,
    checker,
    insert_stripe_accounts,
    make_due,
    run_due,
)
from worker.logconfig import configure_logging
from worker.service.deps import Deps
from worker.vault import Vault


@pytest.fixture
def json_logs() -> Iterator[None]:
    """JSON log lines to stderr as the test sees it (capsys's, during the test); the defaults
    again afterwards."""
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = [logging.StreamHandler(io.StringIO())]


def events(captured: str) -> list[str]:
    return [json.loads(line)["event"] for line in captured.splitlines() if line.startswith("{")]


def written_with_a_dropped_key(deps: Deps, account_id: uuid.UUID, key: str) -> str:
    """Re-encrypt the account's credentials under a key the worker does not have; returns it."""
    dropped = Fernet.generate_key().decode()
    with deps.db.unit_of_work() as session:
        session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(credentials=Vault([dropped]).encrypt({"api_key": key}))
        )
    return dropped


def stored(deps: Deps, account_id: uuid.UUID) -> tuple[Account, list[AccountError], list[Any]]:
    with deps.db.unit_of_work() as session:
        account = session.get(Account, account_id)
        assert account is not None
        errors = list(
            session.scalars(select(AccountError).where(AccountError.account_id == account_id))
        )
        changes = [
            (c.from_status, c.to_status)
            for c in session.scalars(
                select(StatusChange)
                .where(StatusChange.account_id == account_id)
                .order_by(StatusChange.id)
            )
        ]
        session.expunge_all()
    return account, errors, changes


@pytest.mark.usefixtures("json_logs")
def test_a_dropped_key_gives_one_error_logged_once_and_the_key_back_resolves_it(
    check_deps: Deps,
    vault: Vault,
    encryption_key: str,
    stripe_checks: CheckedStripe,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO")
    deps = check_deps
    made = insert_stripe_accounts(deps.db, vault, stripe_checks, 3)
    broken, key = made[0]
    dropped = written_with_a_dropped_key(deps, broken, key)
    check = checker(deps)

    make_due(deps)
    [first] = run_due(deps, check)
    account, [error], changes = stored(deps, broken)
    assert first["verdicts"] == {"recorded": 3}
    assert account.status == "error"
    assert changes == [("connected", "error")]
    assert (error.code, error.occurrences, error.resolved_at) == ("credentials_unreadable", 1, None)
    assert "CONNECTIONS_ENCRYPTION_KEYS" in error.message
    assert "connections accounts rotate-keys" in error.message
    # Not retried every tick: checked as rarely as any account that needs a person.
    assert account.next_check_at is not None
    assert account.next_check_at - utc_now() > timedelta(seconds=CADENCE.interval * 6 * 0.85)

    make_due(deps)  # a second check all the same (an operator's `check`, or the next due time)
    run_due(deps, check)
    account, [error], changes = stored(deps, broken)
    assert (error.code, error.occurrences, error.resolved_at) == ("credentials_unreadable", 2, None)
    assert changes == [("connected", "error")]
    logged = events(capsys.readouterr().err)
    assert logged.count("credentials_unreadable") == 1
    assert "check_crashed" not in logged
    assert logged.count("checks_batch") == 2  # the log really was captured
    for healthy, _ in made[1:]:
        assert stored(deps, healthy)[0].status == "connected"

    # The operator puts the key back: the next check passes and resolves the error.
    restored = Deps(db=deps.db, vault=Vault([encryption_key, dropped]), connectors=deps.connectors)
    make_due(restored)
    run_due(restored, checker(restored))
    account, [error], changes = stored(deps, broken)
    assert account.status == "connected"
    assert error.resolved_at is not None
    assert changes == [("connected", "error"), ("error", "connected")]


def test_a_check_job_records_unreadable_credentials_instead_of_crashing(
    check_deps: Deps, vault: Vault, stripe_checks: CheckedStripe, check_account: Any
) -> None:
    deps = check_deps
    [(broken, key)] = insert_stripe_accounts(deps.db, vault, stripe_checks, 1)
    written_with_a_dropped_key(deps, broken, key)

    results = [check_account(deps, str(broken)) for _ in range(2)]

    for result in results:
        assert result["status"] == "succeeded", result
        assert (result["checked"], result["passed"]) == (True, False)
        assert result["error_code"] == "credentials_unreadable"
        assert "rotate-keys" in result["message"]
    account, [error], changes = stored(deps, broken)
    assert account.status == "error"
    assert (error.code, error.occurrences) == ("credentials_unreadable", 2)
    assert changes == [("connected", "error")]
