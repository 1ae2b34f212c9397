"""The outbox relay: publish unpublished outbox rows in `seq` order, then stamp them published.

At least once: a crash between publishing and the commit publishes the rows again. One relay
at a time (a transaction-scoped advisory lock), so rows go out in order. The stream is trimmed
by age (`trim`, run by the retention task), never by length: every entry younger than the
window stays, however many there are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, func, select, update

from models import Database, OutboxEvent, utc_now
from worker.service.queries import among

STREAM = "connections:events"
# Any fixed number shared by every relay of this database: it names the relay's lock.
RELAY_LOCK_KEY = 0x636F6E6E  # "conn"
# Entries one XTRIM may free: Redis frees whole nodes of ~100 entries, so each call is short and
# other clients are served between calls.
TRIM_LIMIT = 10_000


@dataclass(frozen=True)
class Message:
    """One outbox row as it goes out: `event` is the whole event as JSON (`id`, `type`,
    `org_id`, `account_id`, `occurred_at`, `data`)."""

    id: str
    type: str
    account_id: str | None
    event: str


Publish = Callable[[list[Message]], None]


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
            # `data` is read as the stored JSON text and spliced into the message as it is:
            # decoding it and encoding it again took most of the relay's CPU.
            rows = session.execute(
                select(
                    OutboxEvent.seq,
                    OutboxEvent.id,
                    OutboxEvent.type,
                    OutboxEvent.org_id,
                    OutboxEvent.account_id,
                    OutboxEvent.occurred_at,
                    cast(OutboxEvent.data, Text),
                )
                .where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.seq)
                .limit(batch)
            ).all()
            if not rows:
                return total
            publish([message(*row[1:]) for row in rows])
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


def message(
    id_: Any, type_: str, org_id: str, account_id: Any, occurred_at: Any, data: str
) -> Message:
    account = str(account_id) if account_id else None
    head = json.dumps(
        {
            "id": str(id_),
            "type": type_,
            "org_id": org_id,
            "account_id": account,
            "occurred_at": occurred_at.isoformat(),
        },
        separators=(",", ":"),
    )
    return Message(str(id_), type_, account, f'{head[:-1]},"data":{data}}}')


def redis_publisher(client: Any, stream: str = STREAM) -> Publish:
    """XADD each event to the stream, in order, in one round trip. Fields: `id`, `type`,
    `account_id` (for consumers that filter) and `event`, the whole event as JSON."""

    def publish(messages: list[Message]) -> None:
        pipe = client.pipeline(transaction=False)
        for one in messages:
            fields = {"id": one.id, "type": one.type, "account_id": one.account_id or ""}
            pipe.xadd(stream, {**fields, "event": one.event})
        pipe.execute()

    return publish


def trim(client: Any, min_id: str, stream: str = STREAM, *, max_calls: int = 1000) -> int:
    """Remove the entries older than `min_id` (`XTRIM MINID ~`, in calls of at most
    `TRIM_LIMIT`); returns how many went. Approximate trimming frees only whole nodes whose
    entries are all older, so it never removes a younger entry; it may keep a node's worth of
    older ones until the next run."""
    removed = 0
    for _ in range(max_calls):
        freed = int(client.xtrim(stream, minid=min_id, approximate=True, limit=TRIM_LIMIT))
        removed += freed
        if freed == 0:
            break
    return removed
