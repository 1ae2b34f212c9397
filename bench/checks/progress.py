"""How far the checks got: accounts checked since a moment, and how long until all were."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg


def count_checked(url: str, since: datetime, where: str = "TRUE") -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*) FROM accounts WHERE last_checked_at >= %s AND {where}", (since,)
        ).fetchone()
    return int(row[0]) if row else 0


def wait_checked(
    url: str, since: datetime, total: int, timeout: float, where: str = "TRUE"
) -> tuple[float, int]:
    """Seconds until `total` accounts were checked after `since` (or the timeout), and how many."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = count_checked(url, since, where)
        if done >= total:
            break
        # The time comes from the last `last_checked_at`, not from this loop: polling slowly
        # only spares PostgreSQL a count over every account while it is busy.
        time.sleep(1.0)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT max(last_checked_at) FROM accounts WHERE last_checked_at >= %s AND {where}",
            (since,),
        ).fetchone()
    last = row[0] if row and row[0] else datetime.now(UTC)
    return (last - since).total_seconds(), done
