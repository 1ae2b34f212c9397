"""The rows to prune: a million processed inbox events past the retention window, in the order
they were processed (as the ingest and the workers leave them), and younger processed events that
must stay; then VACUUM ANALYZE, so the table is as a running system's, not a fresh load's."""

from __future__ import annotations

import time

import psycopg

# Payloads like the ingest's deliveries (bench.ingest.deliveries): a Stripe invoice.paid event.
INSERT = """
INSERT INTO inbound_events (id, provider, provider_event_id, topic, route_key, payload,
                            occurred_at, status, attempts, received_at, processed_at, effect,
                            last_attempt_at)
SELECT gen_random_uuid(), 'stripe', %(tag)s || g, 'invoice.paid',
       'acct_bench' || lpad((g %% 50)::text, 4, '0'),
       jsonb_build_object(
           'id', %(tag)s || g, 'object', 'event', 'type', 'invoice.paid',
           'account', 'acct_bench' || lpad((g %% 50)::text, 4, '0'),
           'created', 1764000000 + g,
           'data', jsonb_build_object('object', jsonb_build_object(
               'id', 'in_' || g, 'amount_paid', 4200, 'currency', 'sek'))),
       t, 'processed', 1, t, t + interval '40 ms', 'recorded', t
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
     LATERAL (SELECT now() - make_interval(secs => %(ago)s) + g * interval '1 ms' AS t) AS at
"""
CHUNK = 100_000


def seed(
    url: str, old: int, young: int, *, old_days: float, young_days: float, round_: int = 0
) -> None:
    """`old` rows processed about `old_days` ago and `young` about `young_days` ago (one
    millisecond apart), in chunks of CHUNK rows, each its own transaction; `round_` keeps the
    event ids of each round apart."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        rows = ((f"evt_old{round_}_", old, old_days), (f"evt_young{round_}_", young, young_days))
        for tag, count, days in rows:
            for first in range(0, count, CHUNK):
                last = min(count, first + CHUNK) - 1
                params = {"tag": tag, "first": first, "last": last, "ago": days * 86400}
                conn.execute(INSERT, params)
        conn.execute("VACUUM ANALYZE inbound_events")
    print(
        f"seeded {old:,} processed rows past the window and {young:,} inside it in "
        f"{time.monotonic() - started:.0f} s (VACUUM ANALYZE included)"
    )


def counts(url: str, cutoff_days: float) -> tuple[int, int]:
    """Processed rows past and inside a window of `cutoff_days`."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE processed_at < now() - make_interval(secs => %(s)s)),"
            " count(*) FILTER (WHERE processed_at >= now() - make_interval(secs => %(s)s))"
            " FROM inbound_events WHERE status = 'processed'",
            {"s": cutoff_days * 86400},
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
