"""Storing provider events in the inbox: each (provider, event id) once, a whole group in one
statement, and for a stream the newest offset per topic in the same transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.events import ParsedEvent
from models import InboundEvent, InboundStatus, StreamOffset, utc_now


@dataclass(frozen=True)
class Incoming:
    """A verified event to store; `account_id` when the path already named the account."""

    event: ParsedEvent
    account_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Stored:
    status: str  # "accepted" (new row) or "duplicate" (the provider sent it before)
    id: uuid.UUID


class InsertPlan:
    """One group of events to insert: each new (provider, event id) once, with its new row id;
    after the insert, `answers` tells each item whether it was accepted or a duplicate."""

    def __init__(self, items: Sequence[Incoming]) -> None:
        self.items = items
        self.now = utc_now()
        self.first: dict[tuple[str, str], uuid.UUID] = {}
        self.rows: list[dict[str, Any]] = []
        self._texts: list[Callable[[], str]] = []
        for item in items:
            key = (item.event.provider, item.event.event_id)
            if key in self.first:
                continue
            self.first[key] = uuid.uuid4()
            self.rows.append(_row(self.first[key], item, self.now))
            self._texts.append(item.event.payload_text)

    def postgres_params(self) -> dict[str, Any]:
        """The parameters of `INSERT_POSTGRES`: the rows as one JSON array, each payload spliced
        in as the provider sent it (it was parsed once already; PostgreSQL checks it again)."""
        parts = []
        for row, text in zip(self.rows, self._texts, strict=True):
            head = json.dumps(
                {
                    "id": str(row["id"]),
                    "provider": row["provider"],
                    "event_id": row["provider_event_id"],
                    "topic": row["topic"],
                    "route_key": row["route_key"],
                    "account_id": str(row["account_id"]) if row["account_id"] else None,
                    "occurred_at": row["occurred_at"].isoformat() if row["occurred_at"] else None,
                },
                separators=(",", ":"),
            )
            parts.append(f'{head[:-1]},"payload":{text()}}}')
        return {"now": self.now, "rows": "[" + ",".join(parts) + "]"}

    def missing(self, inserted: set[uuid.UUID]) -> list[tuple[str, str]]:
        """The keys that were stored before: their ids must be looked up."""
        return [key for key, new_id in self.first.items() if new_id not in inserted]

    def answers(
        self, inserted: set[uuid.UUID], known: dict[tuple[str, str], uuid.UUID]
    ) -> list[Stored]:
        answers: list[Stored] = []
        told: set[tuple[str, str]] = set()
        for item in self.items:
            key = (item.event.provider, item.event.event_id)
            if key in known:
                answers.append(Stored("duplicate", known[key]))
            elif key not in told and self.first[key] in inserted:
                told.add(key)
                answers.append(Stored("accepted", self.first[key]))
            else:
                answers.append(Stored("duplicate", self.first[key]))
        return answers


# One statement whose text never changes (PostgreSQL prepares it once) and one parameter: the
# group as a JSON array, which PostgreSQL unpacks faster than Python can dump column arrays.
INSERT_POSTGRES = """
INSERT INTO inbound_events (id, provider, provider_event_id, topic, route_key, account_id,
                            payload, occurred_at, status, attempts, received_at)
SELECT id, provider, event_id, topic, route_key, account_id, payload, occurred_at,
       'received', 0, %(now)s
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS t(id uuid, provider text, event_id text, topic text, route_key text, account_id uuid,
          payload jsonb, occurred_at timestamptz)
ON CONFLICT (provider, provider_event_id) DO NOTHING
RETURNING id
"""
KNOWN_POSTGRES = """
SELECT e.provider, e.provider_event_id, e.id
FROM inbound_events e
JOIN unnest(%(providers)s::text[], %(event_ids)s::text[]) AS k(provider, event_id)
  ON e.provider = k.provider AND e.provider_event_id = k.event_id
"""


def known_params(keys: list[tuple[str, str]]) -> dict[str, Any]:
    return {"providers": [p for p, _ in keys], "event_ids": [e for _, e in keys]}


def store_events(conn: Connection, items: Sequence[Incoming]) -> list[Stored]:
    """Insert each new event in the caller's transaction; repeats of a stored event (also within
    `items`) answer `duplicate` with the stored row's id. One statement for the whole group."""
    plan = InsertPlan(items)
    postgres = conn.dialect.name == "postgresql"
    inserted: set[uuid.UUID] = set()
    if plan.rows and postgres:
        inserted = {row[0] for row in conn.exec_driver_sql(INSERT_POSTGRES, plan.postgres_params())}
    elif plan.rows:
        statement = (
            sqlite.insert(InboundEvent)
            .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
            .returning(InboundEvent.id)
        )
        inserted = set(conn.execute(statement, plan.rows).scalars())
    known: dict[tuple[str, str], uuid.UUID] = {}
    missing = plan.missing(inserted)
    if missing and postgres:
        found = conn.exec_driver_sql(KNOWN_POSTGRES, known_params(missing))
        known = {(p, e): i for p, e, i in found}
    elif missing:
        query = select(
            InboundEvent.provider, InboundEvent.provider_event_id, InboundEvent.id
        ).where(tuple_(InboundEvent.provider, InboundEvent.provider_event_id).in_(missing))
        known = {(p, e): i for p, e, i in conn.execute(query)}
    return plan.answers(inserted, known)


def store_stream_events(
    conn: Connection, stream: str, items: Sequence[Incoming], offsets: dict[str, int]
) -> list[Stored]:
    """Store events read from a stream and, in the same transaction, the newest offset per
    topic: an offset is never stored ahead of its event."""
    stored = store_events(conn, items)
    now = utc_now()
    for topic, offset in offsets.items():
        if conn.dialect.name == "postgresql":
            pg = postgresql.insert(StreamOffset).values(
                stream=stream, topic=topic, offset=offset, updated_at=now
            )
            upsert: Any = pg.on_conflict_do_update(
                index_elements=["stream", "topic"],
                set_={
                    "offset": func.greatest(StreamOffset.offset, pg.excluded.offset),
                    "updated_at": now,
                },
            )
        else:
            lite = sqlite.insert(StreamOffset).values(
                stream=stream, topic=topic, offset=offset, updated_at=now
            )
            upsert = lite.on_conflict_do_update(
                index_elements=["stream", "topic"],
                set_={"offset": func.max(StreamOffset.offset, lite.excluded.offset)},
            )
        conn.execute(upsert)
    return stored


def stream_offsets(session: Session, stream: str) -> dict[str, int]:
    query = select(StreamOffset.topic, StreamOffset.offset).where(StreamOffset.stream == stream)
    return {topic: offset for topic, offset in session.execute(query)}


def _row(new_id: uuid.UUID, item: Incoming, now: datetime) -> dict[str, Any]:
    event = item.event
    return {
        "id": new_id,
        "provider": event.provider,
        "provider_event_id": event.event_id,
        "topic": event.topic,
        "route_key": event.route_key,
        "account_id": item.account_id,
        "payload": event.payload,
        "occurred_at": event.occurred_at,
        "status": InboundStatus.RECEIVED.value,
        "attempts": 0,
        "received_at": now,
    }
