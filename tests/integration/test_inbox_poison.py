"""An event that kills its worker cannot kill workers forever, nor take its batch down with it."""

from __future__ import annotations

from sqlalchemy import update

from models import Database, InboundEvent
from tests.fixtures.ingest import make_account
from tests.integration.test_inbox import account_now, open_errors, row, store, stripe
from worker.service import inbox
from worker.vault import Vault


def crashed_once(db: Database, event_id: object, times: int = 1) -> None:
    """As if `times` workers took the event and died before recording anything."""
    with db.unit_of_work() as session:
        session.execute(
            update(InboundEvent).where(InboundEvent.id == event_id).values(attempts=times)
        )


def test_a_crash_suspect_is_sent_back_alone_and_its_batch_goes_on(
    db: Database, vault: Vault
) -> None:
    make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_poison1"}
    )
    suspect = store(db, stripe("customer.created", "acct_poison1"))
    innocent = store(db, stripe("customer.updated", "acct_poison1"))
    crashed_once(db, suspect)

    report = inbox.process_events(db, [suspect, innocent])
    assert report.alone == [suspect]
    assert report.processed == 1
    assert row(db, innocent).status == "processed"
    assert (row(db, suspect).status, row(db, suspect).attempts) == ("received", 1)

    alone = inbox.process_events(db, [suspect])  # its own message: processed normally
    assert alone.processed == 1
    assert (row(db, suspect).status, row(db, suspect).attempts) == ("processed", 2)


def test_an_event_that_always_kills_its_worker_ends_failed(db: Database, vault: Vault) -> None:
    account = make_account(
        db, vault, "stripe", connection={"mode": "connect", "stripe_account_id": "acct_poison2"}
    )
    poison = store(db, stripe("customer.created", "acct_poison2"))
    crashed_once(db, poison, times=inbox.MAX_ATTEMPTS - 1)

    report = inbox.process_events(db, [poison])
    assert report.failed == 1
    assert report.processed == 0
    stored = row(db, poison)
    assert (stored.status, stored.attempts) == ("failed", inbox.MAX_ATTEMPTS)
    assert "stopped while processing" in (stored.last_error or "")
    assert "event_unprocessable" in open_errors(db, account.id)
    assert account_now(db, account.id).status == "connected"
