"""Retention: what is old enough to delete, and deleting it in small batches that never hold up
intake (the contract's Retention section).

Each batch is its own short transaction: it picks up to `batch` rows by a range scan of one
partial index, oldest first, locks them with SKIP LOCKED (it never waits for a row another
transaction holds, and two pruners never pick the same rows) and deletes them in the same
statement. Only rows the ingest no longer touches are picked, so its inserts do not wait on a
prune (a redelivery of an event being deleted at that moment waits for that one batch). Nothing
unprocessed, unpublished or running matches any of the conditions below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, any_, delete, func, literal_column, select, text

from models import Database, InboundEvent, Job, OutboxEvent

# Rows per statement: small enough that a batch holds its locks for milliseconds.
BATCH = 2000
# Seconds one run may spend deleting; beat starts a run every minute.
BUDGET = 20.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Windows:
    """How long each kind is kept (the settings INBOX_, OUTBOX_, JOBS_ and
    EVENTS_STREAM_RETENTION)."""

    inbox: timedelta
    outbox: timedelta
    jobs: timedelta
    stream: timedelta


@dataclass(frozen=True)
class Cutoffs:
    """Rows stamped before these times are past their window."""

    processed_events: datetime  # inbox rows processed before this
    attention_events: datetime  # unroutable and failed rows last attempted before this
    outbox: datetime  # outbox rows published before this
    jobs: datetime  # jobs finished before this
    stream: datetime  # stream entries added before this


def cutoffs(now: datetime, windows: Windows) -> Cutoffs:
    if now.tzinfo is None:
        raise ValueError("naive datetime given; use models.clock.utc_now()")
    for name in ("inbox", "outbox", "jobs", "stream"):
        if getattr(windows, name) <= timedelta(0):
            raise ValueError(f"the {name} retention must be positive")
    return Cutoffs(
        processed_events=now - windows.inbox,
        attention_events=now - windows.inbox,
        outbox=now - windows.outbox,
        jobs=now - windows.jobs,
        stream=now - windows.stream,
    )


def stream_min_id(cutoff: datetime) -> str:
    """The smallest stream id to keep: entry ids start with their time in milliseconds, and
    `XTRIM MINID` keeps every id at or above this one."""
    if cutoff.tzinfo is None:
        raise ValueError("naive datetime given; use models.clock.utc_now()")
    return f"{max(0, (cutoff - EPOCH) // timedelta(milliseconds=1))}-0"


@dataclass(frozen=True)
class Kind:
    """One kind of row to prune: its table's key, the index-ordered column a batch walks, and
    the condition (given its cutoff) that makes a row deletable."""

    name: str
    model: type[Any]
    key: Any
    order: Any
    past: Callable[[datetime], ColumnElement[bool]]
    cutoff: Callable[[Cutoffs], datetime]


# The status conditions are written as the partial indexes' predicates are, as SQL literals: a
# bound parameter in their place would leave PostgreSQL's generic plan unable to use the index.
PROCESSED = text("inbound_events.status = 'processed'")
UNRESOLVED = text("inbound_events.status IN ('unroutable', 'failed')")

KINDS: tuple[Kind, ...] = (
    Kind(
        "processed_events",
        InboundEvent,
        InboundEvent.id,
        InboundEvent.processed_at,
        lambda cut: and_(PROCESSED, InboundEvent.processed_at < cut),
        lambda c: c.processed_events,
    ),
    # Kept until replayed (a replay makes them `received`, which nothing here matches) or for
    # the window after their last attempt; one never dated is kept.
    Kind(
        "attention_events",
        InboundEvent,
        InboundEvent.id,
        InboundEvent.last_attempt_at,
        lambda cut: and_(UNRESOLVED, InboundEvent.last_attempt_at < cut),
        lambda c: c.attention_events,
    ),
    Kind(
        "outbox_events",
        OutboxEvent,
        OutboxEvent.seq,
        OutboxEvent.published_at,
        lambda cut: and_(OutboxEvent.published_at.is_not(None), OutboxEvent.published_at < cut),
        lambda c: c.outbox,
    ),
    # A finished job has its `finished_at`; a running one has none and is never picked.
    Kind(
        "jobs",
        Job,
        Job.id,
        Job.finished_at,
        lambda cut: and_(
            Job.finished_at.is_not(None), Job.finished_at < cut, Job.status != "running"
        ),
        lambda c: c.jobs,
    ),
)


def prune_batch(
    db: Database, kind: Kind, cutoff: datetime, batch: int = BATCH, after: datetime | None = None
) -> tuple[int, datetime | None]:
    """Delete up to `batch` rows of `kind` past `cutoff` (and not before `after`), oldest first,
    in one transaction. Returns how many, and the newest time deleted: the next batch starts
    there, instead of walking again over the index entries of the rows just deleted, which stay
    in the index until vacuum (by measurement that walk made a million-row prune 2.5x slower).

    The rows are picked through the kind's partial index (migration 0004) and locked SKIP
    LOCKED, so the statement waits for nobody. On PostgreSQL they are deleted by their `ctid`,
    which a row locked by this very statement keeps: by measurement 2x faster than looking each
    up again by primary key."""
    statement = batch_statement(kind, cutoff, batch, after, postgres=db.is_postgres)
    with db.unit_of_work() as session:
        times = list(session.scalars(statement))
    return len(times), max(times, default=after)


def batch_statement(
    kind: Kind, cutoff: datetime, batch: int, after: datetime | None, *, postgres: bool
) -> Any:
    """The DELETE of one batch, returning the time (`kind.order`) of each row deleted."""
    condition = kind.past(cutoff)
    if after is not None:
        condition = and_(condition, kind.order >= after)
    table = kind.model.__table__
    if postgres:
        picked = _picked(literal_column("ctid"), kind, condition, batch)
        chosen = literal_column(f"{table.name}.ctid") == any_(func.array(picked))
    else:
        chosen = kind.key.in_(_picked(kind.key, kind, condition, batch))
    return delete(table).where(chosen).returning(kind.order)


def _picked(column: Any, kind: Kind, condition: ColumnElement[bool], batch: int) -> Any:
    return (
        select(column)
        .select_from(kind.model.__table__)
        .where(condition)
        .order_by(kind.order)
        .limit(batch)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )


@dataclass
class Pruned:
    """What one run deleted, per kind, and whether it ran out of time with rows left."""

    deleted: dict[str, int] = field(default_factory=dict)
    out_of_time: bool = False

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def drain(
    kinds: Sequence[Kind],
    delete_one_batch: Callable[[Kind], int],
    *,
    batch: int,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
) -> Pruned:
    """Batches of each kind in turn (so a large backlog of one never starves the others) until
    every kind has a short batch or the budget is spent."""
    deadline = clock() + budget
    pruned = Pruned({kind.name: 0 for kind in kinds})
    pending = list(kinds)
    while pending:
        for kind in list(pending):
            if clock() >= deadline:
                pruned.out_of_time = True
                return pruned
            deleted = delete_one_batch(kind)
            pruned.deleted[kind.name] += deleted
            if deleted < batch:
                pending.remove(kind)
    return pruned


def prune(
    db: Database,
    cut: Cutoffs,
    *,
    batch: int = BATCH,
    budget: float = BUDGET,
    clock: Callable[[], float] = time.monotonic,
) -> Pruned:
    """Delete what is past its window, within `budget` seconds; the next run goes on."""
    newest: dict[str, datetime | None] = {}

    def one_batch(kind: Kind) -> int:
        deleted, newest[kind.name] = prune_batch(
            db, kind, kind.cutoff(cut), batch, newest.get(kind.name)
        )
        return deleted

    return drain(KINDS, one_batch, batch=batch, budget=budget, clock=clock)
