"""What must hold after every scenario, read from the scenario's database and logs: each webhook
answered 200 processed exactly once, each job answered with exactly one effect, no referenced
account gone, every account connected, no process exited on its own, no secret in any log."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from bench.chaos.jobs import JobDriver
from bench.chaos.stack import Exit

STREAM = "connections:events"


@dataclass
class EventCounts:
    accepted: int = 0
    once: int = 0
    lost: int = 0  # answered 200, then not stored or never processed
    twice: int = 0  # stored twice, or more than one provider.event
    failures: list[str] = field(default_factory=list)


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def unprocessed(url: str, ids: list[str]) -> int:
    """How many of the event ids are not (yet) stored and processed."""
    with psycopg.connect(dsn(url), connect_timeout=3) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT provider_event_id) FROM inbound_events "
            "WHERE provider_event_id = ANY(%s) AND status = 'processed'",
            (ids,),
        ).fetchone()
    return len(ids) - (int(row[0]) if row else 0)


def events(url: str, accepted: set[str]) -> EventCounts:
    ids = sorted(accepted)
    counts = EventCounts(accepted=len(ids))
    with psycopg.connect(dsn(url)) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, count(*), bool_and(status = 'processed'), min(id::text) "
            "FROM inbound_events WHERE provider_event_id = ANY(%s) GROUP BY 1",
            (ids,),
        ).fetchall()
        inbox_ids = [r[3] for r in rows]
        effects: dict[str, int] = dict(
            conn.execute(
                "SELECT data->>'event_id', count(*) FROM outbox_events "
                "WHERE type = 'provider.event' AND data->>'event_id' = ANY(%s) GROUP BY 1",
                (inbox_ids,),
            ).fetchall()
        )
    for _, stored, processed, inbox_id in rows:
        made = effects.get(inbox_id, 0)
        if stored > 1 or made > 1:
            counts.twice += 1
        elif processed and made == 1:
            counts.once += 1
        else:
            counts.lost += 1
    counts.lost += len(ids) - len(rows)
    if counts.lost:
        counts.failures.append(f"{counts.lost} events answered 200 never processed")
    if counts.twice:
        counts.failures.append(f"{counts.twice} events stored or processed more than once")
    return counts


def jobs(url: str, driver: JobDriver) -> list[str]:
    """Every job answered; each add one account (none if it failed or was removed), each link
    one reference, each remove of a referenced account refused and the account still there."""
    failures: list[str] = []
    unanswered = driver.unanswered()
    if unanswered:
        by_task = Counter(j.task for j in unanswered)
        with psycopg.connect(dsn(url)) as conn:
            states = Counter(
                s
                for (s,) in conn.execute(
                    "SELECT status FROM jobs WHERE name = ANY(%s) AND request_id = ANY(%s)",
                    (list(by_task), [j.request_id for j in unanswered]),
                )
            )
        failures.append(
            f"{len(unanswered)} jobs never answered ({dict(by_task)}; their job rows: "
            f"{dict(states) or 'none'})"
        )
    succeeded = {
        (j.kind, j.item) for j in driver.jobs if j.result and j.result["status"] == "succeeded"
    }
    with psycopg.connect(dsn(url)) as conn:
        live = Counter(
            n for (n,) in conn.execute("SELECT name FROM accounts WHERE org_id = 'org-chaos'")
        )
        added = Counter(
            n
            for (n,) in conn.execute(
                "SELECT data->'account'->>'name' FROM outbox_events "
                "WHERE type = 'account.added' AND org_id = 'org-chaos'"
            )
        )
        refs = Counter(i for (i,) in conn.execute("SELECT integration_id FROM integration_refs"))
    wrong_adds = wrong_links = gone = not_refused = 0
    for job in driver.jobs:
        name = driver.account_name(job.item)
        if job.kind == "add" and job.result is None:  # unanswered: at most one effect
            wrong_adds += added[name] > 1 or live[name] > 1
        elif job.kind == "add":
            made = int(("add", job.item) in succeeded)
            removed = int(("remove", job.item) in succeeded)
            wrong_adds += added[name] != made or live[name] != made - removed
        elif job.result is None:
            continue
        elif job.kind == "link":
            if refs[job.kwargs["integration_id"]] != int(("link", job.item) in succeeded):
                wrong_links += 1
        elif job.kind == "remove-referenced":
            if (job.result["status"], job.result["reason"]) != ("rejected", "in_use"):
                not_refused += 1
            if live[name] != 1:
                gone += 1
    if wrong_adds:
        failures.append(f"{wrong_adds} add request ids without exactly one effect")
    if wrong_links:
        failures.append(f"{wrong_links} link request ids without exactly one reference")
    if not_refused or gone:
        failures.append(f"removes of referenced accounts: {not_refused} not refused, {gone} gone")
    return failures


def stream(url: str, redis_url: str, kept: bool) -> tuple[str, list[str]]:
    """Every outbox event published, and (where Redis kept its data) on `connections:events`
    at least once: a note and the failures."""
    with psycopg.connect(dsn(url)) as conn:
        rows = conn.execute(
            "SELECT id::text, published_at IS NOT NULL FROM outbox_events"
        ).fetchall()
    published = {event_id for event_id, done in rows if done}
    failures = []
    if len(published) < len(rows):
        failures.append(f"{len(rows) - len(published)} outbox events never published")
    with redis.Redis.from_url(redis_url) as client:
        entries = client.xrange(STREAM)
    on_stream = {json.loads(fields[b"event"])["id"] for _, fields in entries}
    note = f"stream: {len(entries)} entries for {len(rows)} outbox events"
    missing = len(published - on_stream)
    if not kept:
        note += f" ({missing} published before Redis came back empty are gone with it)"
    elif missing:
        failures.append(f"{missing} published events missing from {STREAM}")
    return note, failures


def not_connected(url: str) -> dict[str, int]:
    """Accounts whose status is not `connected`, by status."""
    with psycopg.connect(dsn(url), connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM accounts WHERE status <> 'connected' GROUP BY 1"
        ).fetchall()
    return {status: int(n) for status, n in rows}


def check_notes(url: str) -> str:
    """What the checks recorded: provider incidents, account errors, status changes."""
    with psycopg.connect(dsn(url)) as conn:
        incidents = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE ended_at IS NULL) FROM provider_incidents"
        ).fetchone()
        errors = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE resolved_at IS NULL) FROM account_errors"
        ).fetchone()
        changes = conn.execute(
            "SELECT count(*) FROM status_changes WHERE source = 'check'"
        ).fetchone()
    assert incidents is not None
    assert errors is not None
    assert changes is not None
    return (
        f"checks: {incidents[0]} provider incidents ({incidents[1]} still open), "
        f"{errors[0]} account errors ({errors[1]} open), {changes[0]} status changes by checks"
    )


def exits(found: list[Exit]) -> list[str]:
    return [f"{e.name} exited on its own (code {e.code}): {e.last_error}" for e in found]


def secrets_in_logs(logs: list[Path], secrets: list[tuple[str, str]]) -> list[str]:
    """Each log that holds a configured secret, naming the log and the kind of secret (never
    the secret)."""
    found: list[str] = []
    for path in logs:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        hits = {kind for kind, secret in secrets if secret and secret in text}
        if hits:
            found.append(f"secret in {path.name}: {', '.join(sorted(hits))}")
    return found
