"""The inbox's decisions, as pure functions of plain data: when a failed event is tried again or
kept failed, which deliveries are crash suspects, which events of a batch are too old to apply,
and how strongly a batch locks its accounts. The modules that call them hold the SQL."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

MAX_ATTEMPTS = 8
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 1800.0
# How long a `received` row may wait for its queue message before the sweeper sends another.
SWEEP_GRACE = timedelta(seconds=60)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the `attempts`-th failed delivery: doubling, and capped so a long
    outage downstream is still retried every half hour."""
    return float(min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1)))


def retry_after(attempts: int) -> float | None:
    """After a failure, with `attempts` counting this delivery: the seconds until it is tried
    again, or None when it has used its attempts and is kept `failed` for a person to replay."""
    if attempts < MAX_ATTEMPTS:
        return retry_delay(attempts)
    return None


# -- deliveries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """A row still `received`, as a new delivery of it finds it."""

    id: uuid.UUID
    attempts: int  # deliveries counted before this one
    outcome_recorded: bool  # an earlier attempt recorded its failure (`last_error` is set)


@dataclass(frozen=True)
class Deliveries:
    """What to do with the rows of one delivery before processing any of them."""

    count: list[uuid.UUID]  # count this delivery on these; they are processed now...
    alone: list[uuid.UUID] = field(default_factory=list)  # ...these go back one per message
    give_up: uuid.UUID | None = None  # counted, then kept failed without being processed


def sort_deliveries(rows: Sequence[Delivery]) -> Deliveries:
    """A row delivered before with no recorded outcome crashed its worker, or is being processed
    elsewhere right now: a crash suspect. In a batch a suspect is set aside to be sent back on
    its own, so it can never take a batch down with it again; alone it is processed, unless
    this delivery is its last attempt: every worker that took it stopped, so it is given up."""
    suspects = {r.id for r in rows if r.attempts > 0 and not r.outcome_recorded}
    if len(rows) > 1:
        return Deliveries([r.id for r in rows if r.id not in suspects], sorted(suspects))
    count = [r.id for r in rows]
    if count and count[0] in suspects and retry_after(rows[0].attempts + 1) is None:
        return Deliveries(count, give_up=count[0])
    return Deliveries(count)


# -- one batch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """What the decisions need of a row claimed for processing."""

    id: uuid.UUID
    sets_state: bool  # its topic sets status or metadata (not only recorded and published)
    attempts: int  # deliveries counted, this one included
    at: datetime  # when it happened: the provider's time, else when it arrived


class Lock(enum.Enum):
    """How a batch locks the accounts its events are for."""

    SHARE = "FOR SHARE"  # only records and publishes: batches for one account run side by side
    UPDATE = "FOR UPDATE"  # may change the accounts: it waits for the others and they for it


def lock_mode(batch: Iterable[Claimed]) -> Lock:
    """Only a topic that sets state, or a failure that opens an error (possible on the last
    attempt), changes an account."""
    if any(event.sets_state or event.attempts >= MAX_ATTEMPTS for event in batch):
        return Lock.UPDATE
    return Lock.SHARE


def stale(
    batch: Sequence[Claimed],
    accounts: Mapping[uuid.UUID, Sequence[uuid.UUID]],
    applied: Mapping[uuid.UUID, datetime],
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """The (event, account) pairs not to apply, the batch taken in order: an event of a topic
    that sets state, older than the newest such event applied to that account (`applied`
    before the batch, then the batch's own). Providers deliver out of order; the newer wins,
    and at the same instant the later arrival. `accounts` maps each event to its accounts."""
    newest = dict(applied)
    found: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for event in batch:
        if not event.sets_state:
            continue
        for account in accounts.get(event.id, ()):
            last = newest.get(account)
            if last is not None and event.at < last:
                found.add((event.id, account))
            else:
                newest[account] = event.at
    return found
