"""Telling long-running processes that an account's credentials changed, as soon as the change
commits: a PostgreSQL NOTIFY on one channel, and the LISTEN loop that hears it. The Fortnox
listener uses it to subscribe a newly connected company within moments instead of a minute."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import psycopg
import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Database

log = structlog.get_logger(__name__)

CHANNEL = "connections_credentials"
# An account type, or None: anything may have changed (the listening connection was (re)made).
OnChange = Callable[[str | None], None]


def credentials_changed(session: Session, account_type: str, account_id: uuid.UUID) -> None:
    """Announce, inside the caller's transaction, that this account's credentials changed
    (connected, refreshed, reconnected or removed). PostgreSQL delivers a NOTIFY only when its
    transaction commits, so listeners never read before the change is visible, and a change
    that rolls back announces nothing. On SQLite (dev) nothing is sent: listeners poll there."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(select(func.pg_notify(CHANNEL, f"{account_type}:{account_id}")))


def account_type_of(payload: str) -> str | None:
    """The account type a notification names (`<type>:<id>`)."""
    kind, _, rest = payload.partition(":")
    return kind if kind and rest else None


def listen_url(db: Database) -> str | None:
    """The libpq URL to LISTEN on for `db`, or None when it cannot notify (SQLite)."""
    if not db.is_postgres:
        return None
    return db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(
    url: str,
    on_change: OnChange,
    *,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
    ping_every: float = 30.0,
) -> None:
    """Call `on_change` for every credentials notification until cancelled, on a connection of
    its own. After each (re)connect it calls `on_change(None)`: notifications sent while it was
    not listening are lost, so the caller re-reads everything. A lost connection is made again
    with backoff; an idle one is pinged so a dead one shows itself."""
    failures = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=10, application_name="connections-listen"
            ) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                failures = 0
                log.info("credentials_listening", channel=CHANNEL)
                on_change(None)
                while True:
                    async for notice in conn.notifies(timeout=ping_every):
                        on_change(account_type_of(notice.payload))
                    await asyncio.wait_for(conn.execute("SELECT 1"), 10)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            failures += 1
            log.warning("credentials_listen_lost", error=type(exc).__name__)
        delay = min(backoff_max, backoff_initial * 2 ** max(0, failures - 1))
        await asyncio.sleep(delay * random.uniform(0.5, 1.0))
