"""Where a check's outcome takes an account, on plain data: its status, and which error opens,
repeats or is resolved."""

from __future__ import annotations

import pytest

from connectors.base import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from models import AccountStatus
from worker.service.checks.transitions import Transition, status_for, transition


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.RATE_LIMITED, AccountStatus.DEGRADED),
        (ErrorCode.PROVIDER_UNAVAILABLE, AccountStatus.DEGRADED),
        (ErrorCode.TIMEOUT, AccountStatus.DEGRADED),
        (ErrorCode.CONNECTION_REVOKED, AccountStatus.DISCONNECTED),
        (ErrorCode.CREDENTIALS_INVALID, AccountStatus.ERROR),
        (ErrorCode.CREDENTIALS_EXPIRED, AccountStatus.ERROR),
        (ErrorCode.REFRESH_FAILED, AccountStatus.ERROR),
        (ErrorCode.PERMISSION_MISSING, AccountStatus.ERROR),
        (ErrorCode.LICENCE_MISSING, AccountStatus.ERROR),
        (ErrorCode.ACCOUNT_FROZEN, AccountStatus.ERROR),
        (ErrorCode.ACCOUNT_LOCKED, AccountStatus.ERROR),
        (ErrorCode.CREDENTIALS_UNREADABLE, AccountStatus.ERROR),
    ],
)
def test_each_failure_leads_to_its_status(code: ErrorCode, status: AccountStatus) -> None:
    assert status_for(code) is status


def test_a_pass_connects_and_resolves_what_a_check_can_disprove() -> None:
    step = transition(CheckResult(), {"credentials_invalid", "event_unprocessable", "timeout"})
    assert step == Transition(
        AccountStatus.CONNECTED, resolves=frozenset({"credentials_invalid", "timeout"})
    )
    assert not step.opens
    assert transition(CheckResult(), set()).resolves == frozenset()
    # An error from events is not disproved by a passing health call.
    assert transition(CheckResult(), {"event_unprocessable"}).resolves == frozenset()


def test_a_new_problem_opens_an_error_and_a_known_one_repeats() -> None:
    rejected = PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401")
    new = transition(rejected, {"timeout"})
    assert (new.status, new.error, new.repeat, new.opens) == (
        AccountStatus.ERROR,
        ErrorCode.CREDENTIALS_INVALID,
        False,
        True,
    )
    again = transition(rejected, {"credentials_invalid"})
    assert (again.repeat, again.opens) == (True, False)
    # A failure resolves nothing, not even another problem that may be gone.
    assert again.resolves == frozenset()


def test_unreadable_credentials_put_the_account_in_error_once() -> None:
    unreadable = PermanentFailure(ErrorCode.CREDENTIALS_UNREADABLE, "no key")
    assert transition(unreadable, set()).opens
    assert transition(unreadable, {"credentials_unreadable"}).repeat
    assert transition(unreadable, set()).status is AccountStatus.ERROR


def test_a_revoked_connection_disconnects() -> None:
    revoked = PermanentFailure(ErrorCode.CONNECTION_REVOKED, "uninstalled")
    assert transition(revoked, set()).status is AccountStatus.DISCONNECTED
    limited = TemporaryFailure(ErrorCode.RATE_LIMITED, "429")
    assert transition(limited, set()).status is AccountStatus.DEGRADED
