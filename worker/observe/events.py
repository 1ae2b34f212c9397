"""What became of processed provider events, counted once their transaction commits (a batch
rolled back and redone event by event is counted once, by its redo)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from sqlalchemy.orm import Session

from models import Account, InboundEvent, InboundStatus, after_commit
from worker import metrics
from worker.service.provider_events import handler_for


def outcome(
    row: InboundEvent,
    accounts: Sequence[Account],
    stale: Collection[tuple[uuid.UUID, uuid.UUID]],
    processed: Collection[uuid.UUID],
) -> str | None:
    """`applied`, `recorded` (its topic sets nothing), `stale` (older than what each of its
    accounts has), `unroutable`, `failed` (after its last attempt); None while it will be
    tried again."""
    if row.id in processed:
        if not handler_for(row.provider, row.topic).sets_state:
            return "recorded"
        if accounts and all((row.id, a.id) in stale for a in accounts):
            return "stale"
        return "applied"
    if row.status == InboundStatus.UNROUTABLE:
        return "unroutable"
    if row.status == InboundStatus.FAILED:
        return "failed"
    return None


def count_processed(
    session: Session,
    rows: Sequence[InboundEvent],
    targets: Mapping[uuid.UUID, Sequence[Account]],
    stale: Collection[tuple[uuid.UUID, uuid.UUID]] = frozenset(),
    processed: Collection[uuid.UUID] = frozenset(),
) -> None:
    """Count the outcome of each of `rows` (routed to `targets`) when `session` commits."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        found = outcome(row, targets.get(row.id, ()), stale, processed)
        if found is not None:
            counts[(row.provider, found)] += 1
    if counts:
        after_commit(session, lambda: metrics.count_events(counts))
