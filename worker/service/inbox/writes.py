"""The set-based writes of processing: inbox rows stamped processed and their `provider.event`
outbox rows, a batch's worth in one statement each."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert, update
from sqlalchemy.orm import Session

from models import Account, InboundEvent, InboundStatus, OutboxEvent, utc_now

OUTBOX = cast(Table, OutboxEvent.__table__)


# The statements of `Writes` on PostgreSQL: their text never changes, so each is prepared
# once, and a whole batch is one round trip with its rows as arrays or one JSON document.
MARK_PROCESSED = """
UPDATE inbound_events AS e
SET status = 'processed', processed_at = %(now)s, account_id = v.account_id, effect = v.effect,
    last_error = NULL, next_attempt_at = NULL
FROM unnest(%(ids)s::uuid[], %(accounts)s::uuid[], %(effects)s::text[])
     AS v(id, account_id, effect)
WHERE e.id = v.id
"""
INSERT_PROVIDER_EVENTS = """
INSERT INTO outbox_events (id, type, org_id, account_id, occurred_at, data, published_at)
SELECT id, 'provider.event', org_id, account_id, occurred_at, data, NULL
FROM ROWS FROM (jsonb_to_recordset(%(rows)s::jsonb)
                AS (id uuid, org_id text, account_id uuid, occurred_at timestamptz, data jsonb))
     WITH ORDINALITY AS t(id, org_id, account_id, occurred_at, data, n)
ORDER BY n
"""


class Writes:
    """What processing writes for every event: the inbox row stamped processed and its
    `provider.event` outbox rows, gathered and written set-based. Row by row through the ORM
    (an UPDATE and an INSERT per event) these cost more than half the worker's CPU per event.
    The stamps bypass the ORM's copies of the rows, which are not read again before commit.

    Flushed before anything else may emit, so the outbox keeps the order events happened in
    (the outbox `seq` follows the order of `rows`)."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.rows: list[dict[str, Any]] = []
        self.done: list[tuple[uuid.UUID, uuid.UUID, str]] = []  # inbox id, account id, effect
        self.processed_ids: set[uuid.UUID] = set()  # stamped in the database

    def add(self, account: Account, data: dict[str, Any]) -> None:
        self.rows.append(
            {
                "id": uuid.uuid4(),
                "type": "provider.event",
                "org_id": account.org_id,
                "account_id": account.id,
                "occurred_at": utc_now(),
                "data": data,
                "published_at": None,
            }
        )

    def processed(self, row: InboundEvent, account_id: uuid.UUID, effect: str) -> None:
        self.done.append((row.id, account_id, effect))

    def discard(self) -> None:
        """Forget what is not flushed (its savepoint was rolled back)."""
        self.done.clear()
        self.rows.clear()

    def flush(self) -> None:
        if not self.rows and not self.done:
            return
        self.session.flush()
        if self.session.get_bind().dialect.name == "postgresql":
            self._flush_postgres()
        else:
            if self.done:
                stamps = [
                    {
                        "id": row_id,
                        "status": InboundStatus.PROCESSED.value,
                        "account_id": account_id,
                        "processed_at": self.now,
                        "effect": effect,
                        "last_error": None,
                        "next_attempt_at": None,
                    }
                    for row_id, account_id, effect in self.done
                ]
                self.session.execute(update(InboundEvent), stamps)
            if self.rows:
                self.session.execute(insert(OUTBOX), self.rows)
        self.processed_ids.update(row_id for row_id, _, _ in self.done)
        self.done.clear()
        self.rows.clear()

    def _flush_postgres(self) -> None:
        conn = self.session.connection()
        if self.done:
            conn.exec_driver_sql(
                MARK_PROCESSED,
                {
                    "now": self.now,
                    "ids": [row_id for row_id, _, _ in self.done],
                    "accounts": [account_id for _, account_id, _ in self.done],
                    "effects": [effect for _, _, effect in self.done],
                },
            )
        if self.rows:
            document = [
                {
                    "id": str(r["id"]),
                    "org_id": r["org_id"],
                    "account_id": str(r["account_id"]),
                    "occurred_at": r["occurred_at"].isoformat(),
                    "data": r["data"],
                }
                for r in self.rows
            ]
            conn.exec_driver_sql(
                INSERT_PROVIDER_EVENTS,
                {"rows": json.dumps(document, separators=(",", ":"), default=str)},
            )
