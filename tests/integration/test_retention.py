"""Retention on the real PostgreSQL (and the embedded SQLite): a prune deletes only what is past
its window, never anything unprocessed, unpublished, unroutable-and-young or running, nor an
account's own history; it takes no row another transaction holds; each batch walks its partial
index."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from connectors.shopify import parse_shopify
from models import (
    AccountError,
    AccountEventMark,
    Database,
    InboundEvent,
    Job,
    OutboxEvent,
    StatusChange,
    utc_now,
)
from models.migrate import upgrade
from tests.fixtures.ingest import make_account, shopify_delivery
from worker.service import inbox, retention
from worker.vault import Vault

DAY = timedelta(days=1)
WINDOWS = retention.Windows(inbox=14 * DAY, outbox=7 * DAY, jobs=30 * DAY, stream=7 * DAY)


def event(name: str, status: str, *, received: datetime, **stamps: Any) -> InboundEvent:
    return InboundEvent(
        id=uuid.uuid4(),
        provider="stripe",
        provider_event_id=name,
        topic="invoice.paid",
        payload={"id": name},
        status=status,
        attempts=1,
        received_at=received,
        **stamps,
    )


def outgoing(name: str, *, occurred: datetime, published: datetime | None) -> OutboxEvent:
    return OutboxEvent(
        type="account.status_changed",
        org_id="org-1",
        occurred_at=occurred,
        data={"name": name},
        published_at=published,
    )


def job(name: str, status: str, *, created: datetime, finished: datetime | None) -> Job:
    return Job(
        id=name,
        name="accounts.add",
        request_id=f"req-{name}",
        status=status,
        result=None if finished is None else {"status": status},
        created_at=created,
        finished_at=finished,
    )


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The run's PostgreSQL database, or the embedded SQLite one `connections dev` uses."""
    if request.param == "postgresql":
        yield request.getfixturevalue("db")
        return
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def seeded(store: Database, vault: Vault) -> dict[str, set[str]]:
    """Rows of every kind on both sides of their cutoffs; returns the names expected to stay
    and to go, per table."""
    now = utc_now()
    old, young = now - 60 * DAY, now - DAY
    just_past, just_inside = now - 14 * DAY - timedelta(minutes=1), now - 13 * DAY
    account = make_account(store, vault, "stripe")
    with store.unit_of_work() as session:
        session.add_all(
            [
                # Processed: by when processed, whenever received.
                *(
                    event(f"processed-old-{i}", "processed", received=old, processed_at=old)
                    for i in range(7)
                ),
                event("processed-just-past", "processed", received=old, processed_at=just_past),
                event("processed-young", "processed", received=old, processed_at=just_inside),
                # Never processed: kept however old.
                event("received-old", "received", received=old),
                event("retrying-old", "received", received=old, last_attempt_at=old),
                # Unroutable and failed: by their last attempt, not their arrival.
                event("unroutable-old", "unroutable", received=old, last_attempt_at=old),
                event("unroutable-young", "unroutable", received=old, last_attempt_at=young),
                event("failed-old", "failed", received=old, last_attempt_at=just_past),
                event("failed-young", "failed", received=old, last_attempt_at=just_inside),
                event("unroutable-undated", "unroutable", received=old),
                # Published: by when published. Unpublished: kept however old.
                *(outgoing(f"published-old-{i}", occurred=old, published=old) for i in range(4)),
                outgoing("published-young", occurred=old, published=now - 6 * DAY),
                outgoing("unpublished-old", occurred=old, published=None),
                # Jobs: by when finished; a running one is kept however old.
                job("job-old", "succeeded", created=now - 90 * DAY, finished=now - 31 * DAY),
                job(
                    "job-rejected-old", "rejected", created=old - 90 * DAY, finished=old - 60 * DAY
                ),
                job("job-young", "succeeded", created=now - 90 * DAY, finished=now - 29 * DAY),
                job("job-running-old", "running", created=now - 90 * DAY, finished=None),
                # An account's history is kept while it exists, however old.
                AccountError(
                    account_id=account.id,
                    code="auth_failed",
                    message="old",
                    source="check",
                    first_occurred_at=old - 300 * DAY,
                    last_occurred_at=old - 300 * DAY,
                    resolved_at=old - 300 * DAY,
                ),
                StatusChange(
                    account_id=account.id,
                    to_status="connected",
                    reason="old",
                    source="check",
                    occurred_at=old - 300 * DAY,
                ),
                AccountEventMark(account_id=account.id, last_event_at=old - 300 * DAY),
            ]
        )
    return {
        "gone_events": {f"processed-old-{i}" for i in range(7)}
        | {"processed-just-past", "unroutable-old", "failed-old"},
        "kept_events": {
            "processed-young",
            "received-old",
            "retrying-old",
            "unroutable-young",
            "failed-young",
            "unroutable-undated",
        },
        "gone_outbox": {f"published-old-{i}" for i in range(4)},
        "kept_outbox": {"published-young", "unpublished-old"},
        "gone_jobs": {"job-old", "job-rejected-old"},
        "kept_jobs": {"job-young", "job-running-old"},
    }


def remaining(db: Database) -> dict[str, set[str]]:
    with db.unit_of_work() as session:
        return {
            "events": set(session.scalars(select(InboundEvent.provider_event_id))),
            "outbox": {data["name"] for data in session.scalars(select(OutboxEvent.data))},
            "jobs": set(session.scalars(select(Job.id))),
            "errors": {str(x) for x in session.scalars(select(AccountError.id))},
            "history": {str(x) for x in session.scalars(select(StatusChange.id))},
            "marks": {str(x) for x in session.scalars(select(AccountEventMark.account_id))},
        }


def test_prune_deletes_only_what_is_past_its_window(
    store: Database, seeded: dict[str, set[str]]
) -> None:
    before = remaining(store)

    # Batches of 3: several per kind, the last one short.
    pruned = retention.prune(store, retention.cutoffs(utc_now(), WINDOWS), batch=3)

    after = remaining(store)
    assert after["events"] == before["events"] - seeded["gone_events"]
    assert seeded["kept_events"] <= after["events"]
    assert after["outbox"] == seeded["kept_outbox"]
    assert after["jobs"] == seeded["kept_jobs"]
    for history in ("errors", "history", "marks"):
        assert after[history] == before[history]
        assert after[history]
    assert pruned.deleted == {
        "processed_events": 8,
        "attention_events": 2,
        "outbox_events": 4,
        "jobs": 2,
    }
    assert not pruned.out_of_time
    # A second run finds nothing more.
    assert retention.prune(store, retention.cutoffs(utc_now(), WINDOWS), batch=3).total == 0


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_a_prune_skips_a_row_another_transaction_holds(
    db: Database, seeded: dict[str, set[str]]
) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with db.unit_of_work() as session:
            session.execute(
                select(InboundEvent.id)
                .where(InboundEvent.provider_event_id == "processed-old-0")
                .with_for_update()
            ).one()
            held.set()
            release.wait(60)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        held.wait(30)
        pruned = retention.prune(db, retention.cutoffs(utc_now(), WINDOWS), batch=3)
    finally:
        release.set()
        thread.join()

    # It neither waited for the locked row nor deleted it; the next run will.
    assert pruned.deleted["processed_events"] == 7
    assert "processed-old-0" in remaining(db)["events"]
    assert retention.prune(db, retention.cutoffs(utc_now(), WINDOWS)).deleted == {
        "processed_events": 1,
        "attention_events": 0,
        "outbox_events": 0,
        "jobs": 0,
    }


def test_an_event_replayed_and_unroutable_again_is_kept_a_window_from_then(
    db: Database,
) -> None:
    """Long unroutable, replayed by an operator, and unroutable again: its last attempt is now,
    so the prune keeps it, however long ago it arrived. Each delivery counted stamps it."""
    body, headers = shopify_delivery({"name": "Later"}, "shop/update", "later.myshopify.com")
    with db.engine.begin() as conn:
        [stored] = inbox.store_events(conn, [inbox.Incoming(parse_shopify(headers, body))])
    inbox.process_events(db, [stored.id])
    long_ago = utc_now() - 60 * DAY
    with db.unit_of_work() as session:
        first = session.get(InboundEvent, stored.id)
        assert first is not None
        assert first.status == "unroutable"
        assert first.last_attempt_at is not None
        first.received_at = first.last_attempt_at = long_ago
        inbox.replay(session, str(stored.id))
    before = utc_now()
    inbox.process_events(db, [stored.id])

    retention.prune(db, retention.cutoffs(utc_now(), WINDOWS))

    with db.unit_of_work() as session:
        kept = session.get(InboundEvent, stored.id)
        assert kept is not None
        assert kept.status == "unroutable"
        assert kept.last_attempt_at is not None
        assert kept.last_attempt_at >= before


@pytest.mark.parametrize("resumed", [False, True], ids=["first", "next"])
@pytest.mark.parametrize("kind", retention.KINDS, ids=lambda k: k.name)
def test_each_batch_is_a_range_scan_of_its_partial_index(
    db: Database, kind: retention.Kind, resumed: bool
) -> None:
    """With the planner told to avoid sequential scans where it can, a batch's rows come from
    the kind's index of migration 0004 and are deleted by TID; without an index that fits, a
    Seq Scan would show here. (EXPLAIN alone: nothing is deleted.)"""
    cutoff = utc_now()
    after = cutoff - 30 * DAY if resumed else None
    statement = retention.batch_statement(kind, cutoff, retention.BATCH, after, postgres=True)
    compiled = statement.compile(db.engine, compile_kwargs={"literal_binds": True})
    with db.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {compiled}")))

    index = {
        "processed_events": "ix_inbound_events_processed",
        "attention_events": "ix_inbound_events_attention_attempt",
        "outbox_events": "ix_outbox_events_published",
        "jobs": "ix_jobs_finished",
    }[kind.name]
    assert f" on {index}" in plan or f" using {index}" in plan, plan
    assert "Tid Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
