"""One event applied to the accounts it is for, or its failure recorded: the effect of its topic
(unless a newer event already set that state), the newer-wins mark moved, and its outbox rows
and processed stamp handed to the batch's set-based writes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from connectors.base import ErrorCode
from models import Account, AccountEventMark, InboundEvent, InboundStatus, utc_now
from worker.service import provider_events
from worker.service.inbox import policy
from worker.service.inbox.writes import Writes
from worker.service.records import open_error
from worker.service.views import iso


@dataclass
class Batch:
    """What the events of one batch share while they are applied in order."""

    session: Session
    outbox: Writes
    marks: dict[uuid.UUID, AccountEventMark]  # per account: the newest state-setting event
    integrations: dict[uuid.UUID, list[str]]
    # (event, account) pairs too old to apply, from `judge`.
    stale: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)

    def judge(
        self, claimed: Sequence[policy.Claimed], routed: Mapping[uuid.UUID, Sequence[uuid.UUID]]
    ) -> None:
        """Decide which of `claimed` are too old to apply (`policy.stale`), given the marks as
        they stand. Only the marks compared are read: one expired by a rolled-back savepoint
        is loaded again, as it would be when its account's next event is applied."""
        compared = {a for event in claimed if event.sets_state for a in routed[event.id]}
        applied = {a: self.marks[a].last_event_at for a in compared if a in self.marks}
        self.stale = policy.stale(claimed, routed, applied)


def apply_event(batch: Batch, row: InboundEvent, accounts: list[Account]) -> int:
    """Apply `row` to each of `accounts`; the number of outbox events it emits."""
    if not accounts:
        row.status = InboundStatus.UNROUTABLE
        # Kept for INBOX_RETENTION from its last attempt (a replay that fails again restarts it).
        row.last_attempt_at = utc_now()
        row.last_error = f"no {row.provider} account matches {row.route_key or 'this event'}"
        row.next_attempt_at = None
        return 0
    session, outbox, marks = batch.session, batch.outbox, batch.marks
    handler = provider_events.handler_for(row.provider, row.topic)
    when = row.occurred_at or row.received_at
    effects: list[str] = []
    for account in accounts:
        applied = (row.id, account.id) not in batch.stale
        if not applied:
            newer = marks[account.id].last_event_at
            effect = f"not applied: older than the event applied at {iso(newer)}"
        else:
            if handler.sets_state:
                outbox.flush()  # the provider events before this one precede what it emits
            effect = handler.apply(session, account, row).description
            if handler.sets_state:
                mark = marks.get(account.id)
                if mark is None:
                    mark = AccountEventMark(account_id=account.id, last_event_at=when)
                    session.add(mark)
                    marks[account.id] = mark
                else:
                    mark.last_event_at = when
        effects.append(effect if len(accounts) == 1 else f"{account.id}: {effect}")
        outbox.add(
            account,
            {
                "provider": row.provider,
                "topic": row.topic,
                "event_id": str(row.id),
                "provider_event_id": row.provider_event_id,
                "occurred_at": iso(row.occurred_at),
                "payload": row.payload,
                "integrations": batch.integrations.get(account.id, []),
                "applied": applied,
            },
        )
    outbox.processed(row, accounts[0].id, "; ".join(effects))
    return len(accounts)


def record_failure(
    session: Session, row: InboundEvent, accounts: list[Account], exc: Exception, now: datetime
) -> float | None:
    """Keep on the row what went wrong; the seconds until it is tried again, or None when it has
    used its attempts: then it is kept `failed` and each of its accounts gets an error."""
    # `attempts` already counts this delivery (see `count_deliveries`).
    row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
    delay = policy.retry_after(row.attempts)
    if delay is not None:
        row.next_attempt_at = now + timedelta(seconds=delay)
        return delay
    row.status = InboundStatus.FAILED
    row.last_attempt_at = now
    row.next_attempt_at = None
    message = (
        f"a {row.provider} event ({row.topic}) could not be processed after {row.attempts} "
        f"attempts: {row.last_error}; it is kept and can be replayed"
    )[:1000]
    for account in accounts:
        open_error(session, account, ErrorCode.EVENT_UNPROCESSABLE, message, "event")
    return None
