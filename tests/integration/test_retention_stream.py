"""Trimming the `connections:events` stream by age on a real Redis (a throwaway server): every
entry younger than the window stays; the older ones go, but for at most one node's worth. And the
`retention.prune` task as beat runs it: the settings' windows, the database and the stream."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import structlog
from sqlalchemy import func, select

from models import Database, InboundEvent, OutboxEvent, utc_now
from tests.fixtures.throwaway_redis import redis_server
from worker import runtime
from worker.service import relay, retention
from worker.settings import get_settings
from worker.tasks.retention import prune

CUTOFF = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CUTOFF_MS = int(CUTOFF.timestamp() * 1000)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as connection:
        connection.flushdb()  # the throwaway server's own db
        yield connection


def add(client: redis.Redis, stream: str, ids: list[str]) -> None:
    pipe = client.pipeline(transaction=False)
    for entry_id in ids:
        pipe.xadd(stream, {"event": "{}"}, id=entry_id)
    pipe.execute()


def node_size(client: redis.Redis) -> int:
    return int(client.config_get("stream-node-max-entries")["stream-node-max-entries"])


@pytest.mark.parametrize("limit", [relay.TRIM_LIMIT, 250])
def test_a_trim_keeps_every_entry_younger_than_the_window(
    client: redis.Redis, limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "TRIM_LIMIT", limit)  # 250: the trim takes several calls
    stream = "connections:events"
    old = [f"{CUTOFF_MS - 3_000 + i // 3}-{i % 3}" for i in range(3_000)]
    young = [f"{CUTOFF_MS}-0", f"{CUTOFF_MS}-7"] + [
        f"{CUTOFF_MS + 1 + i // 2}-{i % 2}" for i in range(2_000)
    ]
    add(client, stream, old + young)

    removed = relay.trim(client, retention.stream_min_id(CUTOFF), stream)

    kept = [entry_id.decode() for entry_id, _ in client.xrange(stream)]
    older_kept = [i for i in kept if i in set(old)]
    assert kept[len(older_kept) :] == young  # every younger entry, in order
    assert len(older_kept) < node_size(client)  # at most a node's worth of older ones
    assert removed == len(old) - len(older_kept)
    assert removed > 0
    assert relay.trim(client, retention.stream_min_id(CUTOFF), stream) == 0


def test_a_trim_of_a_missing_or_young_stream_removes_nothing(client: redis.Redis) -> None:
    assert relay.trim(client, retention.stream_min_id(CUTOFF), "connections:events") == 0
    add(client, "connections:events", [f"{CUTOFF_MS + i}-0" for i in range(500)])

    assert relay.trim(client, retention.stream_min_id(CUTOFF), "connections:events") == 0
    assert client.xlen("connections:events") == 500


@pytest.fixture
def task_settings(
    database_url: str, redis_url: str, encryption_key: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """The settings beat's task reads: this run's database, the throwaway Redis for the stream,
    windows of an hour."""
    for name, value in {
        "DATABASE_URL": database_url,
        "EVENTS_REDIS_URL": redis_url,
        "ENCRYPTION_KEYS": encryption_key,
        "INBOX_RETENTION": "3600",
        "OUTBOX_RETENTION": "PT1H",
        "JOBS_RETENTION": "3600",
        "EVENTS_STREAM_RETENTION": "3600",
    }.items():
        monkeypatch.setenv(f"CONNECTIONS_{name}", value)
    get_settings.cache_clear()
    runtime.reset_deps()
    yield
    runtime.reset_deps()
    get_settings.cache_clear()


def count(db: Database, model: type) -> int:
    with db.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_task_prunes_with_the_settings_windows_and_trims_the_stream(
    db: Database, client: redis.Redis, task_settings: None
) -> None:
    now = utc_now()
    with db.unit_of_work() as session:
        for name, processed in (("two-hours", now - timedelta(hours=2)), ("now", now)):
            session.add(
                InboundEvent(
                    provider="stripe",
                    provider_event_id=name,
                    topic="invoice.paid",
                    payload={},
                    status="processed",
                    processed_at=processed,
                )
            )
            session.add(
                OutboxEvent(type="provider.event", org_id="org-1", data={}, published_at=processed)
            )
    now_ms = int(now.timestamp() * 1000)
    hours_ago = now_ms - 2 * 3600 * 1000
    add(client, "connections:events", [f"{hours_ago + i}-0" for i in range(1_000)])
    add(client, "connections:events", [f"{now_ms + i}-0" for i in range(10)])

    with structlog.testing.capture_logs() as logs:
        first = prune()
        second = prune()

    assert first["processed_events"] == 1
    assert first["outbox_events"] == 1
    assert first["stream_entries"] >= 1_000 - node_size(client)
    assert count(db, InboundEvent) == 1
    assert count(db, OutboxEvent) == 1
    assert client.xlen("connections:events") < 10 + node_size(client)
    assert second == {
        "processed_events": 0,
        "attention_events": 0,
        "outbox_events": 0,
        "jobs": 0,
        "stream_entries": 0,
        "out_of_time": False,
    }
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("retention_pruned", "info"),
        ("retention_idle", "debug"),
    ]
    assert logs[0]["processed_events"] == 1
