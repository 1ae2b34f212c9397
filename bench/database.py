"""The benchmarks' own PostgreSQL databases: made fresh and migrated for a run, dropped after, and
the server processes serving one (whose CPU a benchmark counts)."""

from __future__ import annotations

import psycopg


def fresh_database(admin_url: str, name: str) -> str:
    """Create (or re-create) database `name` on the server of `admin_url`, migrated."""
    from models.migrate import upgrade

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{admin_url.rpartition('/')[0]}/{name}"
    upgrade(url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = url.rpartition("/")[2]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_backends(url: str) -> list[int]:
    """The server processes serving `url`'s database now (not this connection's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [pid for (pid,) in rows]
