"""Provider event tasks: `events.process` (inbox ids), `events.sweep` and `events.relay`."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import structlog
from celery import Celery, Task
from sqlalchemy.exc import DBAPIError

from worker.celery_app import app
from worker.runtime import get_deps
from worker.service import inbox, relay
from worker.settings import get_settings

log = structlog.get_logger(__name__)

# Ids per message: large enough that queueing costs little, small enough to spread over workers.
CHUNK = 250
# A worker kicks the relay at most this often; beat runs it anyway every few seconds.
KICK_INTERVAL = 0.25

EVENT_RETRY = {
    "autoretry_for": (DBAPIError,),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 30,
}


def enqueue(celery: Celery, ids: Iterable[uuid.UUID | str], countdown: float | None = None) -> int:
    """Queue `events.process` for these inbox ids (after their rows are committed)."""
    batch = [str(i) for i in ids]
    for start in range(0, len(batch), CHUNK):
        celery.send_task(
            "events.process",
            kwargs={"event_ids": batch[start : start + CHUNK]},
            countdown=countdown,
            # No result is kept, so sending never waits on the result backend.
            ignore_result=True,
        )
    return len(batch)


@app.task(name="events.process", bind=True, ignore_result=True, **EVENT_RETRY)
def process(self: Task, event_ids: Any = None, **_: Any) -> dict[str, Any]:
    ids = _ids(event_ids)
    report = inbox.process_events(get_deps().db, ids)
    for event_id, delay in report.retry.items():
        enqueue(self.app, [event_id], countdown=delay)
    for event_id in report.alone:  # a suspect of a crash: on its own, it can only fail itself
        enqueue(self.app, [event_id])
    if report.emitted:
        _kick_relay(self.app)
    return {
        "processed": report.processed,
        "unroutable": report.unroutable,
        "failed": report.failed,
        "skipped": report.skipped,
        "retrying": len(report.retry),
        "sent_alone": len(report.alone),
    }


@app.task(name="events.sweep", bind=True, ignore_result=True, **EVENT_RETRY)
def sweep(self: Task, grace_seconds: Any = None, **_: Any) -> int:
    """Queue again the events still `received` after the grace period."""
    grace = inbox.SWEEP_GRACE
    if isinstance(grace_seconds, int | float) and grace_seconds >= 0:
        grace = timedelta(seconds=grace_seconds)
    with get_deps().db.unit_of_work() as session:
        ids = inbox.due_for_requeue(session, grace)
    if ids:
        log.info("events_requeued", count=len(ids))
    return enqueue(self.app, ids)


@app.task(name="events.relay", ignore_result=True, **EVENT_RETRY)
def relay_outbox(**_: Any) -> int:
    """Publish the outbox to the Redis stream; without CONNECTIONS_EVENTS_REDIS_URL, nothing."""
    client = _events_redis()
    if client is None:
        return 0
    return relay.relay(get_deps().db, relay.redis_publisher(client))


def _ids(value: Any) -> list[uuid.UUID]:
    values = value if isinstance(value, list) else [value]
    ids: list[uuid.UUID] = []
    for item in values:
        try:
            ids.append(uuid.UUID(str(item)))
        except ValueError:
            log.warning("events_process_bad_id", value=str(item)[:80])
    return ids


_state: dict[str, Any] = {"pid": None, "redis": None, "kicked": 0.0}
_state_lock = threading.Lock()


def _events_redis() -> Any:
    url = get_settings().events_redis_url
    if not url:
        return None
    with _state_lock:
        if _state["pid"] != os.getpid():
            import redis

            _state.update(pid=os.getpid(), redis=redis.Redis.from_url(url))
        return _state["redis"]


def _kick_relay(celery: Celery) -> None:
    if not get_settings().events_redis_url:
        return
    now = time.monotonic()
    with _state_lock:
        if now - _state["kicked"] < KICK_INTERVAL:
            return
        _state["kicked"] = now
    celery.send_task("events.relay", ignore_result=True)
