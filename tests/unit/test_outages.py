"""Incident assessment on plain data: when a provider's recent checks start, continue or end an
incident, when it is suspect or unknown, the recent-checks window those judgements read, when a
process too new to tell adds what other processes recorded, and what an incident that starts
does to the accounts whose outage errors it takes."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from models import AccountStatus
from worker.service.outages import (
    Change,
    Health,
    IncidentPolicy,
    Outlook,
    RecentChecks,
    absorbed_status,
    is_outage,
    outlook,
    wants_shared,
    window_start,
    with_shared,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = IncidentPolicy(min_checks=10, start_share=0.5, suspect_share=0.2, recover_passes=5)


def checks(failed: int, passed: int) -> list[bool]:
    return [True] * failed + [False] * passed


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        ([], Outlook(Change.NONE, Health.UNKNOWN)),
        (checks(9, 0), Outlook(Change.NONE, Health.UNKNOWN)),  # all failing, but too few
        (checks(5, 5), Outlook(Change.START, Health.DOWN)),  # half of ten
        (checks(12, 0), Outlook(Change.START, Health.DOWN)),
        (checks(2, 8), Outlook(Change.NONE, Health.SUSPECT)),  # a fifth
        (checks(4, 6), Outlook(Change.NONE, Health.SUSPECT)),
        (checks(1, 9), Outlook(Change.NONE, Health.HEALTHY)),
        (checks(0, 40), Outlook(Change.NONE, Health.HEALTHY)),
    ],
)
def test_without_an_incident_enough_failing_checks_start_one(
    seen: list[bool], expected: Outlook
) -> None:
    assert outlook(POLICY, seen, incident_open=False) == expected


@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        ([], Outlook(Change.CONTINUE, Health.DOWN)),
        (checks(3, 4), Outlook(Change.CONTINUE, Health.DOWN)),  # four passes: not yet
        (checks(3, 5), Outlook(Change.END, Health.HEALTHY)),  # five in a row end it
        (checks(0, 5), Outlook(Change.END, Health.HEALTHY)),
        ([False] * 5 + [True], Outlook(Change.CONTINUE, Health.DOWN)),  # a failure resets
        ([False] * 4 + [True] + [False] * 4, Outlook(Change.CONTINUE, Health.DOWN)),
    ],
)
def test_an_open_incident_continues_until_enough_passes_in_a_row(
    seen: list[bool], expected: Outlook
) -> None:
    assert outlook(POLICY, seen, incident_open=True) == expected


def test_recent_checks_window_counts_only_recent_and_since_the_last_incident() -> None:
    recent = RecentChecks(IncidentPolicy(window_seconds=60))
    recent.add("stripe", NOW - timedelta(seconds=90), [True] * 5)
    recent.add("stripe", NOW - timedelta(seconds=30), [True, False])
    recent.add("stripe", NOW, [False])
    assert recent.since("stripe", NOW, None) == [True, False, False]
    assert recent.since("stripe", NOW, NOW - timedelta(seconds=10)) == [False]
    assert recent.since("shopify", NOW, None) == []


def test_recent_checks_may_be_added_and_read_from_several_threads() -> None:
    """Jobs of one process run in threads and share the process's recent checks."""
    recent = RecentChecks(IncidentPolicy(window_seconds=3600), size=100_000)
    failures: list[BaseException] = []

    def add() -> None:
        for _ in range(20_000):
            recent.add("stripe", NOW, [True])

    def read() -> None:
        try:
            for _ in range(50):
                recent.since("stripe", NOW - timedelta(seconds=1), None)
        except BaseException as exc:  # a deque mutated while read
            failures.append(exc)

    threads = [threading.Thread(target=f) for f in (add, add, read, read)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, mid-iteration
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert len(recent.since("stripe", NOW, NOW - timedelta(seconds=1))) == 40_000


def test_only_unreachable_slow_or_failing_providers_count_as_outage() -> None:
    assert is_outage(TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "503"))
    assert is_outage(TemporaryFailure(ErrorCode.TIMEOUT, "slow"))
    assert not is_outage(TemporaryFailure(ErrorCode.RATE_LIMITED, "429"))
    assert not is_outage(PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401"))
    assert not is_outage(CheckResult())


def test_the_window_starts_a_window_back_or_at_the_last_incident_when_later() -> None:
    policy = IncidentPolicy(window_seconds=60)
    assert window_start(policy, NOW, None) == NOW - timedelta(seconds=60)
    assert window_start(policy, NOW, NOW - timedelta(seconds=90)) == NOW - timedelta(seconds=60)
    assert window_start(policy, NOW, NOW - timedelta(seconds=10)) == NOW - timedelta(seconds=10)


def test_recent_checks_know_which_accounts_failed_in_the_window() -> None:
    recent = RecentChecks(IncidentPolicy(window_seconds=60))
    recent.add("stripe", NOW - timedelta(seconds=90), [True], ["gone"])
    recent.add("stripe", NOW - timedelta(seconds=30), [True, False, True], ["a", "b", "a"])
    recent.add("stripe", NOW, [True])  # no account given: counted, not named
    assert recent.failing("stripe", NOW, None) == {"a"}
    assert recent.failing("stripe", NOW, NOW - timedelta(seconds=10)) == set()
    assert recent.since("stripe", NOW, None) == [True, False, True, True]


@pytest.mark.parametrize(
    ("seen", "incident_open", "outage", "wanted"),
    [
        (checks(1, 0), False, True, True),  # a fresh process's first outage failure
        (checks(3, 6), False, True, True),  # nine: still too few to tell
        (checks(1, 9), False, True, False),  # ten of its own: enough
        (checks(0, 3), False, False, False),  # nothing failed like an outage: nothing to judge
        (checks(1, 0), True, True, False),  # an incident is open: it takes the failure anyway
    ],
)
def test_a_process_asks_what_others_saw_only_for_an_outage_failure_it_cannot_judge(
    seen: list[bool], incident_open: bool, outage: bool, wanted: bool
) -> None:
    assert wants_shared(POLICY, seen, incident_open=incident_open, outage=outage) is wanted


def test_other_processes_failures_count_once_per_account_while_the_own_sample_is_thin() -> None:
    # A fresh process's one failure, and nine other accounts failing elsewhere: an outage.
    shared = with_shared(POLICY, [True], {"a"}, {"a", *"bcdefghij"})
    assert shared == [True] * 10
    assert outlook(POLICY, shared, incident_open=False) == Outlook(Change.START, Health.DOWN)
    # Accounts this process saw failing are in its own checks already: not counted again.
    assert with_shared(POLICY, [True, True], {"a", "b"}, {"a", "b"}) == [True, True]
    # Four passes of its own and three failures elsewhere: still too few to tell.
    shared = with_shared(POLICY, checks(0, 4), set(), set("bcd"))
    assert outlook(POLICY, shared, incident_open=False).health is Health.UNKNOWN
    # A failure and seven passes of its own, two failures elsewhere: suspect, not an outage.
    shared = with_shared(POLICY, checks(1, 7), {"a"}, set("bc"))
    assert outlook(POLICY, shared, incident_open=False) == Outlook(Change.NONE, Health.SUSPECT)
    # Enough checks of its own: they alone decide.
    assert with_shared(POLICY, checks(1, 9), {"a"}, set("bcdefghijk")) == checks(1, 9)


def test_a_lone_failure_with_nothing_failing_elsewhere_stays_unknown() -> None:
    shared = with_shared(POLICY, [True], {"a"}, {"a"})
    assert outlook(POLICY, shared, incident_open=False) == Outlook(Change.NONE, Health.UNKNOWN)


@pytest.mark.parametrize(
    ("status", "still_open", "restored"),
    [
        ("degraded", [], AccountStatus.CONNECTED),
        ("degraded", ["rate_limited"], None),  # a failure of its own remains
        ("error", [], None),  # a person must act: the incident changes nothing
        ("connected", [], None),
        ("disconnected", [], None),
    ],
)
def test_an_incident_that_takes_an_accounts_outage_error_connects_it_again(
    status: str, still_open: list[str], restored: AccountStatus | None
) -> None:
    assert absorbed_status(status, still_open) is restored
