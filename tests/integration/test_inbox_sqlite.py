"""The inbox on the embedded SQLite database that `connections dev` uses: store, dedupe, route,
process and keep offsets, with the same service code as on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from connectors.fortnox import parse_fortnox
from connectors.shopify import parse_shopify
from models import Account, Database, OutboxEvent
from models.migrate import upgrade
from tests.fixtures.ingest import make_account, shopify_delivery
from worker.service import inbox
from worker.vault import Vault


def test_store_and_process_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(url)
    db = Database(url)
    vault = Vault([Fernet.generate_key().decode()])
    account = make_account(db, vault, "shopify", connection={"shop_domain": "dev.myshopify.com"})
    body, headers = shopify_delivery({"id": 1}, "app/uninstalled", "dev.myshopify.com")
    event = parse_shopify(headers, body)
    message = {"topic": "invoices", "offset": "7", "tenantId": 1, "timestamp": None}
    with db.engine.begin() as conn:
        stored = inbox.store_events(conn, [inbox.Incoming(event), inbox.Incoming(event)])
        streamed = inbox.store_stream_events(
            conn, "fortnox", [inbox.Incoming(parse_fortnox(message))], {"invoices": 7}
        )
    assert [s.status for s in stored] == ["accepted", "duplicate"]
    assert stored[0].id == stored[1].id
    with db.engine.begin() as conn:
        again = inbox.store_stream_events(
            conn, "fortnox", [inbox.Incoming(parse_fortnox(message))], {"invoices": 3}
        )
    assert again[0].status == "duplicate"

    report = inbox.process_events(db, [stored[0].id, streamed[0].id])
    assert (report.processed, report.unroutable) == (1, 1)
    with db.unit_of_work() as session:
        current = session.get(Account, account.id)
        assert current is not None
        assert current.status == "disconnected"
        types = list(session.scalars(select(OutboxEvent.type).order_by(OutboxEvent.seq)))
        assert inbox.stream_offsets(session, "fortnox") == {"invoices": 7}
    assert types == ["account.error_opened", "account.status_changed", "provider.event"]
    db.dispose()
