"""Processing stored events: each delivery counted first, then the batch claimed, routed,
applied and stamped in one transaction, so a crash leaves everything or nothing and a repeat
finds nothing to do. No Celery here: callers queue ids."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session

from models import Account, AccountEventMark, Database, InboundEvent, InboundStatus, utc_now
from worker.observe.events import count_processed
from worker.service import provider_events
from worker.service.inbox import policy
from worker.service.inbox.apply import Batch, apply_event, record_failure
from worker.service.inbox.writes import Writes
from worker.service.queries import among

log = structlog.get_logger(__name__)


@dataclass
class ProcessReport:
    processed: int = 0
    unroutable: int = 0
    failed: int = 0
    skipped: int = 0  # already processed, or being processed by another worker right now
    retry: dict[uuid.UUID, float] = field(default_factory=dict)  # id -> seconds to wait
    emitted: int = 0  # outbox events written
    alone: list[uuid.UUID] = field(default_factory=list)  # to send back one per message

    def failure(self, event_id: uuid.UUID, delay: float | None) -> None:
        """Count a failure that `record_failure` answered with `delay`."""
        if delay is None:
            self.failed += 1
        else:
            self.retry[event_id] = delay


def by_ids(session: Session, ids: Sequence[uuid.UUID]) -> ColumnElement[bool]:
    """Rows by primary key alone; callers check the status in Python. With `status =
    'received'` in the WHERE, PostgreSQL may also scan the partial index of pending rows, which
    its statistics say is small: after a burst it holds every unprocessed row (measured: 5 ms
    for 10 ids with 120,000 pending, 0.1 ms by key)."""
    return among(session, InboundEvent.id, ids)


class _Isolate(Exception):
    """One event of a batch failed: redo the batch with each event in its own savepoint."""


def process_events(db: Database, ids: Sequence[uuid.UUID]) -> ProcessReport:
    """Process the still-unprocessed events among `ids`, all in one transaction: the row is
    claimed (locked, status checked), the effect applied and the row stamped together, so a
    crash at any point leaves either everything or nothing, and a repeat finds nothing to do.

    Each delivery is counted first, in its own transaction, so an event that kills the worker
    outright is counted too: after a crash it is sent back on its own (never again taking a
    batch down with it), and after `MAX_ATTEMPTS` deliveries it is kept `failed`."""
    report = ProcessReport()
    ids = count_deliveries(db, ids, report)
    if not ids:
        return report
    try:
        with db.unit_of_work() as session:
            return _process(session, ids, report, isolate=False)
    except _Isolate:
        pass
    with db.unit_of_work() as session:
        return _process(session, ids, report, isolate=True)


def count_deliveries(
    db: Database, ids: Sequence[uuid.UUID], report: ProcessReport
) -> list[uuid.UUID]:
    """Count this delivery on the rows still `received`; return the ids to process now (see
    `policy.sort_deliveries` for the crash suspects)."""
    with db.unit_of_work() as session:
        found = session.execute(
            select(
                InboundEvent.id, InboundEvent.attempts, InboundEvent.last_error, InboundEvent.status
            ).where(by_ids(session, ids))
        ).all()
        rows = [
            policy.Delivery(r.id, r.attempts, r.last_error is not None)
            for r in found
            if r.status == InboundStatus.RECEIVED
        ]
        plan = policy.sort_deliveries(rows)
        report.alone.extend(plan.alone)
        if not plan.count:
            return []
        # By key only (see `by_ids`); a row another worker processed since the SELECT above
        # counts one delivery more, which changes nothing.
        session.execute(
            update(InboundEvent)
            .where(by_ids(session, plan.count))
            .values(attempts=InboundEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if plan.give_up is not None:
            row = session.get(InboundEvent, plan.give_up)
            assert row is not None
            crash = RuntimeError("the worker stopped while processing it, on every attempt")
            targets = provider_events.route(session, [row])
            delay = record_failure(session, row, targets[row.id], crash, utc_now())
            report.failure(row.id, delay)
            count_processed(session, [row], targets)
            return []
    report.skipped += len(set(ids)) - len(rows)
    return plan.count


def _process(
    session: Session, ids: Sequence[uuid.UUID], report: ProcessReport, *, isolate: bool
) -> ProcessReport:
    locked = session.scalars(
        select(InboundEvent)
        .where(by_ids(session, ids))
        .order_by(InboundEvent.received_at, InboundEvent.id)
        .with_for_update(skip_locked=True)
    )
    # A locked row is its newest version: its status is current.
    rows = [row for row in locked if row.status == InboundStatus.RECEIVED]
    report.skipped += len(set(ids)) - len(rows)
    if not rows:
        return report
    claimed = [
        policy.Claimed(
            row.id,
            provider_events.handler_for(row.provider, row.topic).sets_state,
            row.attempts,
            row.occurred_at or row.received_at,
        )
        for row in rows
    ]
    exclusive = policy.lock_mode(claimed) is policy.Lock.UPDATE
    targets = provider_events.route(session, rows, exclusive=exclusive)
    accounts = {a.id: a for found in targets.values() for a in found}
    marks = {
        m.account_id: m
        for m in session.scalars(
            select(AccountEventMark).where(among(session, AccountEventMark.account_id, accounts))
        )
    }
    integrations = provider_events.integration_ids(session, accounts.values())
    now = utc_now()
    routed = {row_id: [a.id for a in found] for row_id, found in targets.items()}
    batch = Batch(session, Writes(session, now), marks, integrations)
    batch.judge(claimed, routed)
    for n, row in enumerate(rows):
        found = targets[row.id]
        if not isolate:
            try:
                report.emitted += apply_event(batch, row, found)
            except Exception as exc:
                raise _Isolate from exc
            continue
        try:
            with session.begin_nested():
                report.emitted += apply_event(batch, row, found)
                batch.outbox.flush()
        except Exception as exc:
            batch.outbox.discard()
            log.warning(
                "event_processing_failed",
                inbox_id=str(row.id),
                provider=row.provider,
                topic=row.topic,
                error=type(exc).__name__,
            )
            _reload_marks(session, marks, found)
            report.failure(row.id, record_failure(session, row, found, exc, now))
            # What the rolled-back event would have applied no longer stands in the way.
            batch.judge(claimed[n + 1 :], routed)
    batch.outbox.flush()
    count_processed(session, rows, targets, batch.stale, batch.outbox.processed_ids)
    for row in rows:
        if row.id in batch.outbox.processed_ids:
            report.processed += 1
        elif row.status == InboundStatus.UNROUTABLE:
            report.unroutable += 1
    return report


def _reload_marks(
    session: Session, marks: dict[uuid.UUID, AccountEventMark], accounts: list[Account]
) -> None:
    """A mark added or moved inside a rolled-back savepoint is gone: reload it."""
    for account in accounts:
        marks.pop(account.id, None)
        kept = session.get(AccountEventMark, account.id)
        if kept is not None:
            marks[account.id] = kept
