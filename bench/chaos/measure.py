"""The figures of a scenario after its fault: when the accepted events were all processed (the
drain), when every account was connected again, how long the system took to recover."""

from __future__ import annotations

import time

import psycopg

from bench.chaos import invariants
from bench.chaos.context import Run
from bench.chaos.jobs import JobDriver


def drain(run: Run, bound: float) -> float | None:
    """When every accepted event was processed (its last `processed_at`); None if not within
    `bound`, or once no events worker is left to process them (without the restart policy)."""
    ids = sorted(run.webhooks.accepted_ids())
    deadline, dead_since = time.monotonic() + bound, None
    while time.monotonic() < deadline:
        try:
            if invariants.unprocessed(run.url, ids) == 0:
                return last_processed(run.url, ids)
        except psycopg.Error:
            pass
        if run.stack.workers_alive():
            dead_since = None
        elif dead_since is None:
            dead_since = time.monotonic()
        elif time.monotonic() - dead_since > 5:
            run.notes.append("drain abandoned: no events worker left to process the rest")
            return None
        time.sleep(0.5)
    return None


def last_processed(url: str, ids: list[str]) -> float:
    with psycopg.connect(invariants.dsn(url)) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM max(processed_at)) FROM inbound_events "
            "WHERE provider_event_id = ANY(%s)",
            (ids,),
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else time.time()


def settle(url: str, bound: float) -> float | None:
    """When every account was `connected` and every outbox event published (the relay runs
    every 2 s); None if not within `bound`."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        try:
            if not invariants.not_connected(url) and not unpublished(url):
                return time.time()
        except psycopg.Error:
            pass
        time.sleep(0.25)
    return None


def unpublished(url: str) -> int:
    with psycopg.connect(invariants.dsn(url), connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
        ).fetchone()
    return int(row[0]) if row else 0


def recovery(run: Run, recovers: str, ended: float) -> float | None:
    """Seconds from the fault's end until: every account was connected again ("accounts"); a
    job was answered ("jobs"); a webhook sent after it was accepted and an event was processed
    ("service", the later of the two). None when that never happened."""
    if recovers == "accounts":
        return None if run.settled_at is None else run.settled_at - ended
    if recovers == "jobs":
        answered = [j.answered_at for j in run.jobs.jobs if j.answered_at]
        return min((t - ended for t in answered if t >= ended), default=None)
    accepted = run.webhooks.first_accepted_after(ended)
    with psycopg.connect(invariants.dsn(run.url)) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM min(processed_at)) FROM inbound_events "
            "WHERE processed_at >= to_timestamp(%s)",
            (ended,),
        ).fetchone()
    processed = float(row[0]) if row and row[0] is not None else None
    if accepted is None or processed is None:
        return None
    return max(accepted, processed) - ended


def job_notes(jobs: JobDriver) -> str:
    sent = sum(len(j.task_ids) for j in jobs.jobs)
    resent = sum(max(0, len(j.task_ids) - jobs.copies) for j in jobs.jobs)
    outcomes: dict[str, int] = {}
    for job in jobs.jobs:
        if job.result is not None:
            outcome = f"{job.task} {job.result['status']}"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    answered = sum(outcomes.values())
    listed = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    return (
        f"jobs: {len(jobs.jobs)} ({sent} messages, {resent} resent, {jobs.send_failures} "
        f"refused by the broker), {answered} answered: {listed}"
    )
