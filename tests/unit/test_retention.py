"""The pure parts of retention: the cutoffs from the windows, the stream's minimum id, the
batch loop's fairness and time budget, and the /readyz rule for a nearly full Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.api.health import REDIS_MEMORY_LIMIT, memory_problem
from worker.service.retention import KINDS, Kind, Windows, cutoffs, drain, stream_min_id

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
WINDOWS = Windows(
    inbox=timedelta(days=14),
    outbox=timedelta(days=7),
    jobs=timedelta(days=30),
    stream=timedelta(hours=36),
)


def test_each_cutoff_is_its_window_before_now() -> None:
    cut = cutoffs(NOW, WINDOWS)

    assert cut.processed_events == datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    # Unroutable and failed events count their window from the last attempt, with the inbox's.
    assert cut.attention_events == cut.processed_events
    assert cut.outbox == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert cut.jobs == datetime(2026, 11, 8, 12, 0, tzinfo=UTC)
    assert cut.stream == datetime(2026, 12, 7, 0, 0, tzinfo=UTC)


def test_cutoffs_refuse_a_naive_time_and_an_empty_window() -> None:
    with pytest.raises(ValueError, match="naive"):
        cutoffs(NOW.replace(tzinfo=None), WINDOWS)
    with pytest.raises(ValueError, match="outbox retention must be positive"):
        cutoffs(NOW, Windows(WINDOWS.inbox, timedelta(0), WINDOWS.jobs, WINDOWS.stream))


def test_the_stream_min_id_is_the_cutoff_in_milliseconds() -> None:
    cut = datetime(2026, 12, 7, 0, 0, 0, 123456, tzinfo=UTC)

    # XTRIM MINID keeps ids at or above it: an entry added in the cutoff's millisecond stays.
    assert stream_min_id(cut) == f"{int(cut.timestamp()) * 1000 + 123}-0"
    with pytest.raises(ValueError, match="naive"):
        stream_min_id(cut.replace(tzinfo=None))


class Backlog:
    """Rows left per kind; deleting takes `cost` seconds of a fake clock per batch."""

    def __init__(self, rows: dict[str, int], batch: int, cost: float = 0.0) -> None:
        self.rows = dict(rows)
        self.batch = batch
        self.cost = cost
        self.now = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def delete(self, kind: Kind) -> int:
        self.calls.append(kind.name)
        self.now += self.cost
        deleted = min(self.batch, self.rows[kind.name])
        self.rows[kind.name] -= deleted
        return deleted


def test_drain_takes_the_kinds_in_turn_until_each_has_a_short_batch() -> None:
    backlog = Backlog(
        {"processed_events": 25, "attention_events": 0, "outbox_events": 10, "jobs": 3}, batch=10
    )

    pruned = drain(KINDS, backlog.delete, batch=10, budget=60, clock=backlog.clock)

    assert pruned.deleted == {
        "processed_events": 25,
        "attention_events": 0,
        "outbox_events": 10,
        "jobs": 3,
    }
    assert pruned.total == 38
    assert not pruned.out_of_time
    # Round robin: the large backlog of one kind does not hold up the others.
    assert backlog.calls == [
        "processed_events",
        "attention_events",
        "outbox_events",
        "jobs",
        "processed_events",
        "outbox_events",  # a full batch last time: maybe more
        "processed_events",
    ]


def test_drain_stops_when_the_budget_is_spent_and_says_so() -> None:
    backlog = Backlog({k.name: 1_000 for k in KINDS}, batch=10, cost=1.0)

    pruned = drain(KINDS, backlog.delete, batch=10, budget=5.0, clock=backlog.clock)

    assert pruned.out_of_time
    assert len(backlog.calls) == 5  # the batch that crossed the deadline is the last
    assert pruned.total == 50


@pytest.mark.parametrize(
    ("used", "maximum", "ready"),
    [
        (500, 1000, True),
        (900, 1000, True),  # at the limit: still ready
        (901, 1000, False),
        (1000, 1000, False),
        (10**12, 0, True),  # no maxmemory: nothing Redis could report as the bound
    ],
)
def test_a_redis_above_the_memory_limit_is_not_ready(used: int, maximum: int, ready: bool) -> None:
    assert REDIS_MEMORY_LIMIT == 0.9
    problem = memory_problem(used, maximum)

    assert (problem is None) is ready
    if problem is not None:
        assert f"uses {used / maximum:.0%} of maxmemory" in problem


def test_beat_prunes_at_least_once_a_minute_within_its_budget() -> None:
    import worker.tasks  # noqa: F401  (registers the tasks)
    from worker.celery_app import app
    from worker.schedules import BEAT_SCHEDULE
    from worker.service.retention import BUDGET

    entry = BEAT_SCHEDULE["retention-prune"]

    assert entry["task"] == "retention.prune"
    assert "retention.prune" in app.tasks
    assert entry["schedule"] <= 60
    # A run ends before the next is due, and a run that waited too long is dropped.
    assert BUDGET < entry["schedule"]
    assert entry["options"]["expires"] <= entry["schedule"]


def test_a_stream_trim_with_its_redis_away_is_left_for_the_next_run() -> None:
    import structlog

    from worker.settings import Settings
    from worker.tasks.retention import trim_stream

    settings = Settings(events_redis_url="redis://127.0.0.1:1/0")  # nothing listens there

    with structlog.testing.capture_logs() as logs:
        trimmed = trim_stream(settings, cutoffs(NOW, WINDOWS))

    assert trimmed == 0
    assert [(e["event"], e["log_level"], e["error"]) for e in logs] == [
        ("retention_stream_unavailable", "warning", "ConnectionError")
    ]
