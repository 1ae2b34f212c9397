"""The verdict on one account's check, on plain data: what is recorded, held back, counted on the
provider's incident or dropped, for a scheduled check and for an `accounts.check` job."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from connectors.base import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from worker.service.checks.verdicts import CheckOutcome, HoldRules, Verdict, judge
from worker.service.outages import Health

OUTAGE = TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "503")
SLOW = TemporaryFailure(ErrorCode.TIMEOUT, "slow")
LIMITED = TemporaryFailure(ErrorCode.RATE_LIMITED, "429")
REJECTED = PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401")
UNREADABLE = PermanentFailure(ErrorCode.CREDENTIALS_UNREADABLE, "no key")
RULES = HoldRules(confirm_after=2, hold_limit=5)


Decide = Callable[..., Verdict]


def scheduled(
    status: str,
    failures: int,
    outcome: CheckOutcome | None,
    health: Health,
    *,
    incident: bool,
    stale: bool = False,
) -> Verdict:
    return judge(status, failures, outcome, health, incident=incident, stale=stale, rules=RULES)


def job(
    status: str,
    failures: int,
    outcome: CheckOutcome | None,
    health: Health,
    *,
    incident: bool,
    stale: bool = False,
) -> Verdict:
    return judge(
        status,
        failures,
        outcome,
        health,
        incident=incident,
        stale=stale,
        scheduled=False,
        rules=RULES,
    )


@pytest.mark.parametrize("decide", [scheduled, job])
@pytest.mark.parametrize("outcome", [CheckResult(), REJECTED, UNREADABLE])
@pytest.mark.parametrize("health", list(Health))
def test_passes_and_permanent_failures_are_always_recorded(
    decide: Decide, outcome: CheckOutcome, health: Health
) -> None:
    for status in ("connected", "degraded", "error", "pending"):
        verdict = decide(status, 0, outcome, health, incident=health is Health.DOWN)
        assert verdict is Verdict.RECORDED


@pytest.mark.parametrize("decide", [scheduled, job])
def test_disconnected_crashed_and_stale_checks_record_nothing(decide: Decide) -> None:
    gone = decide("disconnected", 0, CheckResult(), Health.HEALTHY, incident=False)
    assert gone is Verdict.GONE
    assert decide("connected", 0, None, Health.HEALTHY, incident=False) is Verdict.CRASHED
    stale = decide("connected", 0, REJECTED, Health.HEALTHY, incident=False, stale=True)
    assert stale is Verdict.STALE


@pytest.mark.parametrize("decide", [scheduled, job])
@pytest.mark.parametrize("outcome", [OUTAGE, SLOW])
@pytest.mark.parametrize("status", ["connected", "degraded", "error"])
def test_an_outage_failure_during_an_incident_is_counted_on_the_incident(
    decide: Decide, outcome: CheckOutcome, status: str
) -> None:
    assert decide(status, 3, outcome, Health.DOWN, incident=True) is Verdict.INCIDENT


def test_a_rate_limit_during_an_incident_is_the_accounts_own_but_held_while_in_doubt() -> None:
    assert scheduled("connected", 1, LIMITED, Health.DOWN, incident=True) is Verdict.HELD
    assert job("connected", 0, LIMITED, Health.DOWN, incident=True) is Verdict.HELD
    assert job("degraded", 0, LIMITED, Health.DOWN, incident=True) is Verdict.RECORDED


def test_a_scheduled_check_confirms_a_healthy_accounts_first_temporary_failure() -> None:
    assert scheduled("connected", 0, OUTAGE, Health.HEALTHY, incident=False) is Verdict.HELD
    assert scheduled("pending", 0, LIMITED, Health.HEALTHY, incident=False) is Verdict.HELD
    assert scheduled("connected", 1, OUTAGE, Health.HEALTHY, incident=False) is Verdict.RECORDED


@pytest.mark.parametrize("health", [Health.UNKNOWN, Health.SUSPECT])
def test_a_scheduled_check_holds_while_the_provider_is_in_doubt_up_to_the_limit(
    health: Health,
) -> None:
    held = [scheduled("connected", n, OUTAGE, health, incident=False) for n in range(6)]
    assert held == [Verdict.HELD] * 4 + [Verdict.RECORDED] * 2  # tries 1-4 held, 5 recorded


def test_a_job_says_what_it_found_unless_there_is_evidence_of_an_outage() -> None:
    # Someone asked now, and nothing says the provider is failing for others: recorded.
    assert job("connected", 0, OUTAGE, Health.HEALTHY, incident=False) is Verdict.RECORDED
    assert job("connected", 0, OUTAGE, Health.UNKNOWN, incident=False) is Verdict.RECORDED
    # Many of the provider's checks are failing: held, like a scheduled check, up to the limit.
    assert job("connected", 0, OUTAGE, Health.SUSPECT, incident=False) is Verdict.HELD
    assert job("connected", 3, SLOW, Health.SUSPECT, incident=False) is Verdict.HELD
    assert job("connected", 4, OUTAGE, Health.SUSPECT, incident=False) is Verdict.RECORDED


def test_an_account_in_error_stays_in_error_through_a_provider_hiccup() -> None:
    for health in Health:
        assert scheduled("error", 2, OUTAGE, health, incident=False) is Verdict.HELD
    assert job("error", 2, OUTAGE, Health.SUSPECT, incident=False) is Verdict.HELD
    # A job with no sign of an outage records what it found, as before.
    assert job("error", 2, OUTAGE, Health.HEALTHY, incident=False) is Verdict.RECORDED


def test_a_degraded_account_counts_each_further_failure_on_its_error() -> None:
    for health in (Health.HEALTHY, Health.UNKNOWN, Health.SUSPECT):
        assert scheduled("degraded", 1, OUTAGE, health, incident=False) is Verdict.RECORDED
        assert job("degraded", 1, OUTAGE, health, incident=False) is Verdict.RECORDED
