"""Where the real PostgreSQL and Redis of the test run are, and whether they answer."""

from __future__ import annotations

import os
import uuid
from functools import cache

import psycopg
import redis
from sqlalchemy.engine import make_url

ADMIN_DATABASE_URL = os.environ.get(
    "CONNECTIONS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CONNECTIONS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@cache
def postgres_problem() -> str | None:
    try:
        psycopg.connect(_libpq(ADMIN_DATABASE_URL), connect_timeout=3).close()
    except Exception as exc:
        return f"PostgreSQL not reachable at {ADMIN_DATABASE_URL} ({type(exc).__name__})"
    return None


@cache
def redis_problem() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis not reachable at {REDIS_URL} ({type(exc).__name__})"
    return None


def create_database() -> str:
    """A new, empty database for this test run; returns its SQLAlchemy URL."""
    name = f"connections_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(ADMIN_DATABASE_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(ADMIN_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(_libpq(ADMIN_DATABASE_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
