"""`retention.prune`: beat's minutely deletion of what is past its retention window (the inbox,
the outbox, finished jobs) and the trim of the `connections:events` stream."""

from __future__ import annotations

from typing import Any

import redis
import structlog

from models import utc_now
from worker.celery_app import app
from worker.runtime import get_deps
from worker.service import relay, retention
from worker.settings import Settings, get_settings

log = structlog.get_logger(__name__)


def windows(settings: Settings) -> retention.Windows:
    return retention.Windows(
        inbox=settings.inbox_retention,
        outbox=settings.outbox_retention,
        jobs=settings.jobs_retention,
        stream=settings.events_stream_retention,
    )


@app.task(name="retention.prune", ignore_result=True)
def prune(**_: Any) -> dict[str, Any]:
    settings = get_settings()
    cut = retention.cutoffs(utc_now(), windows(settings))
    pruned = retention.prune(get_deps().db, cut)
    counts = {**pruned.deleted, "stream_entries": trim_stream(settings, cut)}
    if any(counts.values()):
        log.info("retention_pruned", **counts, out_of_time=pruned.out_of_time)
    else:
        log.debug("retention_idle")
    return {**counts, "out_of_time": pruned.out_of_time}


def trim_stream(settings: Settings, cut: retention.Cutoffs) -> int:
    """Without CONNECTIONS_EVENTS_REDIS_URL nothing is published, so there is nothing to trim.
    With its Redis away, the next run trims what this one could not."""
    if not settings.events_redis_url:
        return 0
    try:
        with redis.Redis.from_url(settings.events_redis_url, socket_timeout=10) as client:
            return relay.trim(client, retention.stream_min_id(cut.stream))
    except redis.RedisError as exc:
        log.warning("retention_stream_unavailable", error=type(exc).__name__)
        return 0
