"""The inbox's decisions on plain data: when a failed event is retried or kept failed, which
deliveries are crash suspects, how a batch locks its accounts, and which events of a batch are
too old to apply. The SQL around them is proved by tests/integration/test_inbox*.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from worker.service.inbox import policy
from worker.service.inbox.policy import (
    MAX_ATTEMPTS,
    Claimed,
    Deliveries,
    Delivery,
    Lock,
    lock_mode,
    retry_after,
    retry_delay,
    sort_deliveries,
    stale,
)

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
A, B = uuid.UUID(int=0xA), uuid.UUID(int=0xB)


def ids(n: int) -> list[uuid.UUID]:
    return [uuid.UUID(int=i + 1) for i in range(n)]


# -- retries ----------------------------------------------------------------------------------


def test_retry_delay_doubles_from_the_base_up_to_the_cap() -> None:
    assert [retry_delay(n) for n in range(1, 6)] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert retry_delay(0) == policy.RETRY_BASE_SECONDS
    assert retry_delay(30) == policy.RETRY_MAX_SECONDS
    delays = [retry_delay(n) for n in range(1, 40)]
    assert delays == sorted(delays)
    assert max(delays) == policy.RETRY_MAX_SECONDS


def test_a_failure_is_retried_until_the_last_attempt_then_kept_failed() -> None:
    for attempts in range(1, MAX_ATTEMPTS):
        assert retry_after(attempts) == retry_delay(attempts)
    assert retry_after(MAX_ATTEMPTS) is None
    assert retry_after(MAX_ATTEMPTS + 3) is None  # counted again by a late duplicate delivery


# -- deliveries -------------------------------------------------------------------------------


def test_a_first_delivery_counts_and_processes_every_row() -> None:
    rows = [Delivery(i, 0, outcome_recorded=False) for i in ids(3)]
    assert sort_deliveries(rows) == Deliveries(count=ids(3))


def test_a_row_whose_failure_was_recorded_is_a_retry_not_a_suspect() -> None:
    first, second = ids(2)
    rows = [Delivery(first, 3, outcome_recorded=True), Delivery(second, 0, False)]
    assert sort_deliveries(rows) == Deliveries(count=[first, second])


def test_crash_suspects_in_a_batch_go_back_alone_sorted_and_uncounted() -> None:
    one, two, three, four = ids(4)
    rows = [
        Delivery(four, 2, outcome_recorded=False),
        Delivery(one, 0, outcome_recorded=False),
        Delivery(two, 1, outcome_recorded=False),
        Delivery(three, 1, outcome_recorded=True),
    ]
    plan = sort_deliveries(rows)
    assert plan.alone == [two, four]
    assert plan.count == [one, three]
    assert plan.give_up is None


def test_a_batch_of_only_suspects_processes_nothing_now() -> None:
    rows = [Delivery(i, 1, outcome_recorded=False) for i in ids(2)]
    assert sort_deliveries(rows) == Deliveries(count=[], alone=ids(2))


def test_a_suspect_alone_is_processed_until_its_last_attempt() -> None:
    [suspect] = ids(1)
    for attempts in range(1, MAX_ATTEMPTS - 1):
        plan = sort_deliveries([Delivery(suspect, attempts, outcome_recorded=False)])
        assert plan == Deliveries(count=[suspect])


def test_a_suspect_alone_on_its_last_attempt_is_counted_and_given_up() -> None:
    [suspect] = ids(1)
    plan = sort_deliveries([Delivery(suspect, MAX_ATTEMPTS - 1, outcome_recorded=False)])
    assert plan == Deliveries(count=[suspect], give_up=suspect)


def test_a_recorded_failure_alone_on_its_last_attempt_is_still_processed() -> None:
    [event] = ids(1)
    plan = sort_deliveries([Delivery(event, MAX_ATTEMPTS - 1, outcome_recorded=True)])
    assert plan == Deliveries(count=[event])


def test_nothing_still_received_means_nothing_to_do() -> None:
    assert sort_deliveries([]) == Deliveries(count=[])


# -- lock mode --------------------------------------------------------------------------------


def claimed(sets_state: bool = False, attempts: int = 1, at: datetime = T0) -> Claimed:
    return Claimed(uuid.uuid4(), sets_state, attempts, at)


def test_a_batch_that_only_records_shares_its_locks() -> None:
    assert lock_mode([claimed(), claimed(attempts=MAX_ATTEMPTS - 1)]) is Lock.SHARE
    assert lock_mode([]) is Lock.SHARE


@pytest.mark.parametrize(
    "odd_one",
    [claimed(sets_state=True), claimed(attempts=MAX_ATTEMPTS)],
    ids=["sets state", "last attempt may open an error"],
)
def test_one_event_that_may_change_an_account_locks_the_batch_for_update(
    odd_one: Claimed,
) -> None:
    assert lock_mode([claimed(), odd_one, claimed()]) is Lock.UPDATE


# -- newer wins -------------------------------------------------------------------------------


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_an_event_older_than_the_applied_one_is_stale_equal_and_newer_are_not() -> None:
    older, same, newer = (claimed(True, at=at(m)) for m in (-1, 0, 1))
    batch = [older, same, newer]
    routed = {e.id: [A] for e in batch}
    assert stale(batch, routed, {A: T0}) == {(older.id, A)}


def test_within_a_batch_a_newer_event_makes_a_later_older_one_stale() -> None:
    newer, older = claimed(True, at=at(60)), claimed(True, at=at(0))
    routed = {newer.id: [A], older.id: [A]}
    assert stale([newer, older], routed, {}) == {(older.id, A)}
    assert stale([older, newer], routed, {}) == set()  # in order: both apply


def test_events_that_only_record_are_never_stale_and_move_no_mark() -> None:
    record_newer, record_older = claimed(False, at=at(60)), claimed(False, at=at(-60))
    state = claimed(True, at=at(0))
    batch = [record_newer, record_older, state]
    routed = {e.id: [A] for e in batch}
    assert stale(batch, routed, {A: T0}) == set()


def test_each_account_keeps_its_own_newest() -> None:
    event = claimed(True, at=at(0))
    routed = {event.id: [A, B]}
    assert stale([event], routed, {A: at(5), B: at(-5)}) == {(event.id, A)}


def test_an_unroutable_event_has_nothing_stale() -> None:
    event = claimed(True, at=at(-600))
    assert stale([event], {event.id: []}, {A: T0}) == set()
    assert stale([event], {}, {A: T0}) == set()


def test_the_applied_marks_are_not_changed() -> None:
    event = claimed(True, at=at(10))
    applied = {A: T0}
    stale([event], {event.id: [A]}, applied)
    assert applied == {A: T0}
