"""Incident assessment on plain data: when a provider's recent checks start, continue or end an
incident, when it is suspect or unknown, and the recent-checks window those judgements read."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from worker.service.outages import (
    Change,
    Health,
    IncidentPolicy,
    Outlook,
    RecentChecks,
    is_outage,
    outlook,
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
