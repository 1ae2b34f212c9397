"""`connections webhooks list` and `replay` as an operator runs them, in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connectors.stripe import parse_stripe
from models import Database
from tests.fixtures.ingest import stripe_delivery, stripe_event
from worker.service import inbox

ROOT = Path(__file__).resolve().parents[2]


def cli(
    database_url: str, encryption_key: str, var: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": database_url,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        # No broker: replay must still put the event back, for the sweeper to queue.
        "CONNECTIONS_BROKER_URL": "redis://127.0.0.1:1/0",
        "CONNECTIONS_RESULT_BACKEND": "redis://127.0.0.1:1/0",
        "CONNECTIONS_VAR_DIR": str(var),
        "CONNECTIONS_LOG_LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "webhooks", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_list_and_replay(
    database_url: str, encryption_key: str, db: Database, tmp_path: Path
) -> None:
    body, _ = stripe_delivery(stripe_event("invoice.paid", account="acct_nowhere"))
    with db.engine.begin() as conn:
        [stored] = inbox.store_events(conn, [inbox.Incoming(parse_stripe(body))])
    inbox.process_events(db, [stored.id])

    listed = cli(database_url, encryption_key, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["events"]
    assert (row["id"], row["status"]) == (str(stored.id), "unroutable")

    replayed = cli(database_url, encryption_key, tmp_path, "replay", str(stored.id), "--json")
    assert replayed.returncode == 0, replayed.stderr
    view = json.loads(replayed.stdout)
    assert view["status"] == "received"
    assert view["queued"] is False

    received = cli(database_url, encryption_key, tmp_path, "list", "--status", "received")
    assert str(stored.id) in received.stdout
    assert "received" in received.stdout
    assert "acct_nowhere" in received.stdout

    missing = cli(database_url, encryption_key, tmp_path, "replay", "evt_never_seen")
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == ["error: no stored event 'evt_never_seen'"]
