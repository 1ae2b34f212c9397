"""What the inbox holds after a run: every event id sent stored once (and, end to end,
processed with exactly one `provider.event`), and when each was processed."""

from __future__ import annotations

import time

import psycopg


def verify_stored_once(url: str, ids: list[str], processed: bool, in_flight: int = 0) -> str:
    """Every event id that was sent is one inbox row (and, end to end, processed with exactly
    one `provider.event`). Up to `in_flight` ids may be missing: the requests wrk had sent but
    not seen answered when its time ran out (it closes their connections)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, count(*), min(status), max(status), min(id::text) "
            "FROM inbound_events WHERE provider_event_id = ANY(%s) GROUP BY 1",
            (ids,),
        ).fetchall()
        problems = [r for r in rows if r[1] != 1]
        missing = len(ids) - len(rows)
        text = f"stored: {len(rows)}/{len(ids)} once each, {missing} missing, {len(problems)} twice"
        if in_flight:
            text += f" (up to {in_flight} may be missing: in flight when wrk stopped)"
            missing = max(0, missing - in_flight)
        if processed:
            not_done = [r for r in rows if r[2] != "processed" or r[3] != "processed"]
            inbox_ids = [r[4] for r in rows]
            effects = conn.execute(
                "SELECT data->>'event_id', count(*) FROM outbox_events "
                "WHERE type = 'provider.event' AND data->>'event_id' = ANY(%s) GROUP BY 1",
                (inbox_ids,),
            ).fetchall()
            once = sum(1 for _, n in effects if n == 1)
            text += (
                f"; processed: {len(rows) - len(not_done)}/{len(rows)}; "
                f"exactly one provider.event: {once}/{len(rows)}"
            )
            ok = not problems and not missing and not not_done and once == len(rows)
        else:
            ok = not problems and not missing
    return ("OK   " if ok else "FAIL ") + text


def wait_processed(url: str, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM inbound_events "
                "WHERE provider_event_id = ANY(%s) AND status <> 'processed'",
                (ids,),
            ).fetchone()
            if left and left[0] == 0:
                return
            time.sleep(0.5)


def processed_times(url: str, sent_at: dict[str, float]) -> tuple[list[float], float]:
    """Request-to-processed latencies (seconds) and the last processed time."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT provider_event_id, extract(epoch FROM processed_at) FROM inbound_events "
            "WHERE provider_event_id = ANY(%s) AND processed_at IS NOT NULL",
            (list(sent_at),),
        ).fetchall()
    latencies = [float(done) - sent_at[eid] for eid, done in rows]
    return latencies, max((float(done) for _, done in rows), default=0.0)


def processed_burst(url: str, ids: list[str]) -> tuple[int, float]:
    """How many of `ids` were processed, and when the last of them was (0, 0.0 for none)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), extract(epoch FROM max(processed_at)) FROM inbound_events "
            "WHERE provider_event_id = ANY(%s) AND status = 'processed'",
            (ids,),
        ).fetchone()
    return (int(row[0]), float(row[1])) if row and row[1] else (0, 0.0)
