"""The outbox relay over the real PostgreSQL and Redis: rows go to the stream in `seq` order and
are stamped published; a failed publish leaves them for the next run; one relay at a time."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import func, select, text

from models import Account, Database, OutboxEvent
from tests import services
from tests.fixtures.ingest import make_account
from worker.service import relay
from worker.service.records import emit
from worker.vault import Vault


@pytest.fixture
def stream() -> Iterator[tuple[redis.Redis, str]]:
    problem = services.redis_problem()
    if problem:
        pytest.skip(problem)
    client = redis.Redis.from_url(services.REDIS_URL)
    name = f"test:connections:events:{uuid.uuid4().hex}"
    yield client, name
    client.delete(name)


def write_events(db: Database, accounts: list[Account], count: int) -> None:
    with db.unit_of_work() as session:
        for i in range(count):
            account = accounts[i % len(accounts)]
            emit(session, "account.status_changed", account.org_id, account, {"n": i})


def stream_events(client: redis.Redis, name: str) -> list[dict[str, Any]]:
    entries = client.xrange(name)
    return [json.loads(fields[b"event"]) for _, fields in entries]


def test_relay_publishes_in_order_and_once(
    db: Database, vault: Vault, stream: tuple[redis.Redis, str]
) -> None:
    client, name = stream
    accounts = [make_account(db, vault, "stripe") for _ in range(3)]
    write_events(db, accounts, 1203)

    sent = relay.relay(db, relay.redis_publisher(client, name), batch=500)

    assert sent == 1203
    assert relay.unpublished(db) == 0
    published = stream_events(client, name)
    assert [e["data"]["n"] for e in published] == list(range(1203))
    first = published[0]
    assert set(first) == {"id", "type", "org_id", "account_id", "occurred_at", "data"}
    assert first["account_id"] == str(accounts[0].id)
    for account in accounts:
        mine = [e["data"]["n"] for e in published if e["account_id"] == str(account.id)]
        assert mine == sorted(mine)
    assert relay.relay(db, relay.redis_publisher(client, name)) == 0
    assert client.xlen(name) == 1203


def test_consumer_group_reads_every_event(
    db: Database, vault: Vault, stream: tuple[redis.Redis, str]
) -> None:
    client, name = stream
    account = make_account(db, vault, "shopify")
    client.xgroup_create(name, "workflows", id="0", mkstream=True)
    write_events(db, [account], 25)
    relay.relay(db, relay.redis_publisher(client, name))

    got = client.xreadgroup("workflows", "consumer-1", {name: ">"}, count=100)
    [(_, entries)] = got
    assert [json.loads(f[b"event"])["data"]["n"] for _, f in entries] == list(range(25))
    assert {f[b"type"] for _, f in entries} == {b"account.status_changed"}
    client.xack(name, "workflows", *[entry_id for entry_id, _ in entries])
    assert client.xpending(name, "workflows")["pending"] == 0


def test_failed_publish_leaves_rows_for_the_next_run(
    db: Database, vault: Vault, stream: tuple[redis.Redis, str]
) -> None:
    client, name = stream
    account = make_account(db, vault, "stripe")
    write_events(db, [account], 10)

    def broken(_messages: list[relay.Message]) -> None:
        raise redis.ConnectionError("redis went away")

    with pytest.raises(redis.ConnectionError):
        relay.relay(db, broken)
    assert relay.unpublished(db) == 10

    assert relay.relay(db, relay.redis_publisher(client, name)) == 10
    assert [e["data"]["n"] for e in stream_events(client, name)] == list(range(10))
    with db.unit_of_work() as session:
        stamped = session.scalar(select(func.count()).where(OutboxEvent.published_at.is_not(None)))
    assert stamped == 10


def test_one_relay_at_a_time(db: Database, vault: Vault, stream: tuple[redis.Redis, str]) -> None:
    client, name = stream
    account = make_account(db, vault, "stripe")
    write_events(db, [account], 5)
    with db.engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": relay.RELAY_LOCK_KEY})
        # While another relay holds the lock, this one leaves the rows to it.
        assert relay.relay(db, relay.redis_publisher(client, name)) == 0
    assert relay.relay(db, relay.redis_publisher(client, name)) == 5
