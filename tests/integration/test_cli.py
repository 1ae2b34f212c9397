"""The operator CLI, run as the operator runs it: a process reading the real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from tests import services
from tests.integration.jobs import add, link
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**os.environ, "CONNECTIONS_LOG_FORMAT": "json", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli_env(database_url: str, encryption_key: str) -> dict[str, str]:
    return {"CONNECTIONS_DATABASE_URL": database_url, "CONNECTIONS_ENCRYPTION_KEYS": encryption_key}


def test_accounts_and_jobs_commands(
    deps: Deps, stripe_sim: StripeSimulator, cli_env: dict[str, str]
) -> None:
    _, key = stripe_sim.add_account("Cli AB")
    result = add(deps, credentials={"api_key": key})
    account_id = result["account"]["id"]
    link(deps, integration_id="wf-1", account_id=account_id, name="Sync")

    listed = cli("accounts", "list", "--org", "org-1", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert [a["id"] for a in json.loads(listed.stdout)] == [account_id]

    shown = cli("accounts", "show", account_id, "--json", env=cli_env)
    details = json.loads(shown.stdout)
    assert details["integrations"] == [{"id": "wf-1", "name": "Sync"}]
    assert key not in shown.stdout

    human = cli("accounts", "show", account_id, env=cli_env)
    assert "Sync (wf-1)" in human.stdout

    history = json.loads(cli("accounts", "history", account_id, "--json", env=cli_env).stdout)
    assert [h["to"] for h in history] == ["connected"]
    assert json.loads(cli("accounts", "errors", account_id, "--json", env=cli_env).stdout) == []

    job = json.loads(cli("jobs", "show", result["job_id"], "--json", env=cli_env).stdout)
    assert job == result


def test_unknown_ids_are_clear_errors(cli_env: dict[str, str], db: object) -> None:
    missing = cli("accounts", "show", "00000000-0000-0000-0000-000000000000", env=cli_env)
    assert missing.returncode == 1
    assert "no account" in missing.stderr
    malformed = cli("accounts", "show", "nope", env=cli_env)
    assert malformed.returncode == 1
    assert "not an account id" in malformed.stderr
    assert cli("jobs", "show", "nope", env=cli_env).returncode == 1


def test_rotate_keys_reencrypts_under_the_newest_key(
    deps: Deps, stripe_sim: StripeSimulator, cli_env: dict[str, str]
) -> None:
    from cryptography.fernet import Fernet

    from worker.vault import Vault

    _, key = stripe_sim.add_account()
    add(deps, credentials={"api_key": key})
    newest = Fernet.generate_key().decode()
    env = {
        **cli_env,
        "CONNECTIONS_ENCRYPTION_KEYS": f"{newest},{cli_env['CONNECTIONS_ENCRYPTION_KEYS']}",
    }
    done = cli("accounts", "rotate-keys", env=env)
    assert done.returncode == 0, done.stderr
    assert "1 accounts" in done.stdout
    with deps.db.engine.connect() as conn:
        token = conn.exec_driver_sql("SELECT credentials FROM accounts").scalar_one()
    assert Vault([newest]).decrypt(bytes(token)) == {"api_key": key}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrate_creates_every_table(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/fresh.db"
    else:
        url = services.create_database()
    try:
        done = cli("migrate", env={"CONNECTIONS_DATABASE_URL": url}, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        assert {
            "accounts",
            "integration_refs",
            "account_errors",
            "status_changes",
            "jobs",
            "inbound_events",
            "outbox_events",
            "alembic_version",
        } <= tables
        again = cli("migrate", env={"CONNECTIONS_DATABASE_URL": url}, cwd=tmp_path)
        assert again.returncode == 0, again.stderr
    finally:
        if backend == "postgresql":
            services.drop_database(url)
