"""A refresh the provider refused answers the checks that were under way meanwhile, and no later
one: on plain data, when a refusal found under the account's lock is a check's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from worker.service.checks.probe import refused_since

BEGAN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_refusal_written_after_the_check_began_is_its_answer() -> None:
    # It met the same refusal and waited for the lock while another check's refresh failed.
    assert refused_since(BEGAN + timedelta(milliseconds=30), BEGAN)


def test_a_check_that_began_after_the_refusal_asks_again() -> None:
    assert not refused_since(BEGAN - timedelta(milliseconds=1), BEGAN)
    assert not refused_since(BEGAN, BEGAN)  # a frozen clock: ask, as before
    assert not refused_since(BEGAN - timedelta(hours=2), BEGAN)


def test_no_refusal_or_no_check_asks() -> None:
    assert not refused_since(None, BEGAN)
    assert not refused_since(BEGAN, None)  # not a check (the Fortnox listener): it asks
