"""The outbox relay: publish unpublished outbox rows in `seq` order, then stamp them published.

At least once: a crash between publishing and the commit publishes the rows again. One relay
at a time (a transaction-scoped advisory lock), so rows go out in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select, update

from models import Database, OutboxEvent, utc_now
from worker.service.queries import among

STREAM = "connections:events"
# Any fixed number shared by every relay of this database: it names the relay's lock.
RELAY_LOCK_KEY = 0x636F6E6E  # "conn"

Publish = Callable[[list[dict[str, Any]]], None]


def relay(db: Database, publish: Publish, *, batch: int = 500, max_batches: int = 40) -> int:
    """Publish up to `batch * max_batches` events; returns how many went out. Returns 0 at once
    when another relay holds the lock (it will publish these rows too)."""
    total = 0
    for _ in range(max_batches):
        with db.unit_of_work() as session:
            if db.is_postgres:
                locked = session.scalar(select(func.pg_try_advisory_xact_lock(RELAY_LOCK_KEY)))
                if not locked:
                    return total
            rows = list(
                session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None))
                    .order_by(OutboxEvent.seq)
                    .limit(batch)
                )
            )
            if not rows:
                return total
            publish([row.as_message() for row in rows])
            published = among(session, OutboxEvent.seq, [row.seq for row in rows])
            session.execute(update(OutboxEvent).where(published).values(published_at=utc_now()))
        total += len(rows)
        if len(rows) < batch:
            return total
    return total


def unpublished(db: Database) -> int:
    with db.unit_of_work() as session:
        count = session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    return int(count or 0)


def redis_publisher(client: Any, stream: str = STREAM) -> Publish:
    """XADD each event to the stream, in order, in one round trip. Fields: `id`, `type`,
    `account_id` (for consumers that filter) and `event`, the whole event as JSON."""

    def publish(messages: list[dict[str, Any]]) -> None:
        pipe = client.pipeline(transaction=False)
        for message in messages:
            pipe.xadd(
                stream,
                {
                    "id": message["id"],
                    "type": message["type"],
                    "account_id": message["account_id"] or "",
                    "event": json.dumps(message, separators=(",", ":"), default=str),
                },
            )
        pipe.execute()

    return publish
