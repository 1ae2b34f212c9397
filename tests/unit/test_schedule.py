"""The cadence verdict on plain data (healthy, backoff, error, unreadable credentials,
disconnected, token renewal, jitter), the batch message, and the even split of claimed accounts
into batches. The recent-checks window is tested in test_outages.py."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import CheckResult, ErrorCode, PermanentFailure, TemporaryFailure
from models import Account
from worker.service.checks.cadence import Cadence
from worker.service.checks.schedule import Batch, _even_parts
from worker.service.checks.verdicts import Verdict

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CADENCE = Cadence(interval=900.0)


def account(
    status: str = "connected", failures: int = 0, expires: datetime | None = None
) -> Account:
    return Account(status=status, consecutive_failures=failures, credentials_expire_at=expires)


def due_in(verdict: Verdict, outcome: object, acct: Account, seed: int = 1) -> float:
    due = CADENCE.next_check(acct, verdict, outcome, NOW, random.Random(seed))  # type: ignore[arg-type]
    assert due is not None
    return (due - NOW).total_seconds()


def test_healthy_accounts_are_checked_every_interval_less_jitter() -> None:
    delays = [due_in(Verdict.RECORDED, CheckResult(), account(), seed) for seed in range(200)]
    assert all(900 * 0.9 <= d <= 900 for d in delays)
    assert max(delays) - min(delays) > 50  # spread, not one instant


def test_temporary_failures_back_off_exponentially_up_to_the_interval() -> None:
    outage = TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "503")
    delays = [
        due_in(Verdict.RECORDED, outage, account("degraded", failures=n)) for n in range(1, 8)
    ]
    assert delays[0] <= 60
    assert all(b > a for a, b in zip(delays[:4], delays[1:5], strict=True))
    assert max(delays) <= 900
    assert delays[-1] >= 900 * 0.9


def test_rate_limited_waits_at_least_retry_after() -> None:
    limited = TemporaryFailure(ErrorCode.RATE_LIMITED, "429", retry_after=300.0)
    assert due_in(Verdict.HELD, limited, account(failures=1)) >= 300


def test_error_accounts_are_checked_rarely_and_disconnected_never() -> None:
    rejected = PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "401")
    assert due_in(Verdict.RECORDED, rejected, account("error", 1)) >= 6 * 900 * 0.9
    gone = CADENCE.next_check(
        account("disconnected"), Verdict.RECORDED, rejected, NOW, random.Random(1)
    )
    assert gone is None


def test_unreadable_credentials_are_checked_as_rarely_as_other_errors() -> None:
    unreadable = PermanentFailure(ErrorCode.CREDENTIALS_UNREADABLE, "no key")
    assert due_in(Verdict.RECORDED, unreadable, account("error", 1)) >= 6 * 900 * 0.9
    assert due_in(Verdict.RECORDED, unreadable, account("error", 7)) >= 6 * 900 * 0.9


def test_a_held_failure_is_retried_sooner_and_a_stale_one_after_an_interval() -> None:
    outage = TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "503")
    assert due_in(Verdict.HELD, outage, account(failures=1)) <= CADENCE.retry_delay(1)
    assert due_in(Verdict.STALE, outage, account(failures=1)) >= 900 * 0.9
    assert due_in(Verdict.CRASHED, None, account(failures=2)) <= CADENCE.retry_delay(2)


def test_during_an_incident_checks_back_off_to_the_interval() -> None:
    outage = TemporaryFailure(ErrorCode.TIMEOUT, "slow")
    assert due_in(Verdict.INCIDENT, outage, account(failures=1)) >= 900 * 0.9


def test_expiring_tokens_are_due_ahead_of_expiry() -> None:
    expires = NOW + timedelta(minutes=20)  # renewal at 10 min, before the 15 min interval
    delay = due_in(Verdict.RECORDED, CheckResult(), account(expires=expires))
    assert delay == (expires - NOW).total_seconds() - CADENCE.refresh_ahead
    # Already inside the renewal window (the refresh failed): the normal cadence applies.
    soon = NOW + timedelta(minutes=5)
    assert due_in(Verdict.RECORDED, CheckResult(), account(expires=soon)) >= 900 * 0.9


def test_lease_is_half_the_interval_at_most_five_minutes() -> None:
    assert Cadence(interval=10).lease == timedelta(seconds=5)
    assert Cadence(interval=900).lease == timedelta(seconds=300)


def test_batch_message_round_trips_and_rejects_garbage() -> None:
    batch = Batch("stripe", (uuid.uuid4(), uuid.uuid4()), NOW)
    message = batch.message()
    assert Batch.parse(**message) == batch
    with pytest.raises(ValueError, match="list"):
        Batch.parse("stripe", "not-a-list", message["lease"])
    with pytest.raises(ValueError, match="offset"):
        Batch.parse("stripe", [], "2026-11-01T12:00:00")
    with pytest.raises(ValueError, match="badly formed"):
        Batch.parse("stripe", ["nope"], message["lease"])


@pytest.mark.parametrize(
    ("count", "most", "sizes"),
    [(0, 10, []), (10, 10, [10]), (11, 10, [6, 5]), (667, 400, [334, 333]), (45, 10, [9] * 5)],
)
def test_batches_are_as_few_as_the_size_allows_and_even(
    count: int, most: int, sizes: list[int]
) -> None:
    ids = [uuid.uuid4() for _ in range(count)]
    parts = _even_parts(ids, most)
    assert [len(p) for p in parts] == sizes
    assert [i for p in parts for i in p] == ids  # every id once, in claim order
