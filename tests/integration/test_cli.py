"""The operator CLI, run as the operator runs it: a process reading the real database; and every
configuration mistake said in one line, without a traceback, by the CLI and the processes it
starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from bench.processes import free_port
from tests import services
from tests.integration.jobs import add, link
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str,
    env: dict[str, str],
    cwd: Path = ROOT,
    unset: list[str] | None = None,
    log_format: str = "json",
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in (unset or [])}
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**inherited, "CONNECTIONS_LOG_FORMAT": log_format, **env},
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
    assert [a["id"] for a in json.loads(listed.stdout)["accounts"]] == [account_id]

    shown = cli("accounts", "show", account_id, "--json", env=cli_env)
    details = json.loads(shown.stdout)
    assert details["integrations"] == [{"id": "wf-1", "name": "Sync"}]
    assert key not in shown.stdout

    human = cli("accounts", "show", account_id, env=cli_env)
    assert "Sync (wf-1)" in human.stdout

    history = json.loads(cli("accounts", "history", account_id, "--json", env=cli_env).stdout)
    assert [h["to"] for h in history["status_history"]] == ["connected"]
    errors = json.loads(cli("accounts", "errors", account_id, "--json", env=cli_env).stdout)
    assert errors == {"errors": []}

    job = json.loads(cli("jobs", "show", result["job_id"], "--json", env=cli_env).stdout)
    assert job == result


def test_unknown_ids_are_clear_errors(cli_env: dict[str, str], db: object) -> None:
    missing = cli("accounts", "show", "00000000-0000-0000-0000-000000000000", env=cli_env)
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == ["error: no account 00000000-0000-0000-0000-000000000000"]
    malformed = cli("accounts", "show", "nope", env=cli_env)
    assert malformed.returncode == 1
    assert malformed.stderr.splitlines() == ["error: not an account id: 'nope'"]
    no_job = cli("jobs", "show", "nope", "--json", env=cli_env)
    assert no_job.returncode == 1
    assert json.loads(no_job.stdout) == {
        "error": {"reason": "not_found", "message": "no finished job nope"}
    }


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


def closed_port_url() -> str:
    return f"postgresql://connections:db-password-1234@127.0.0.1:{free_port()}/connections"


def said_in_one_line(done: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    """The one line a refused command wrote (stderr), after asserting it was all it wrote."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ")
    return line


def test_an_unreachable_database_is_one_line(encryption_key: str, tmp_path: Path) -> None:
    env = {
        "CONNECTIONS_DATABASE_URL": closed_port_url(),
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_VAR_DIR": str(tmp_path),
    }
    line = said_in_one_line(cli("accounts", "list", "--org", "x", env=env))
    assert "cannot reach the database at postgresql://connections:***@127.0.0.1" in line
    assert "db-password-1234" not in line
    as_json = cli("accounts", "list", "--org", "x", "--json", env=env)
    assert as_json.returncode == 2
    assert as_json.stderr == ""
    assert json.loads(as_json.stdout)["error"]["code"] == "configuration"
    migrate = cli("migrate", env=env, log_format="console")
    assert "cannot reach the database" in said_in_one_line(migrate)


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        (None, "CONNECTIONS_ENCRYPTION_KEYS is required outside development"),
        ("not-a-fernet-key", "the key is not one"),
        ("{good},not-a-fernet-key", "key 2 of 2 is not one"),
    ],
    ids=["missing", "bad", "second-bad"],
)
def test_missing_or_bad_keys_are_one_line(
    database_url: str, encryption_key: str, tmp_path: Path, keys: str | None, said: str
) -> None:
    env = {"CONNECTIONS_DATABASE_URL": database_url, "CONNECTIONS_VAR_DIR": str(tmp_path)}
    if keys is not None:
        env["CONNECTIONS_ENCRYPTION_KEYS"] = keys.format(good=encryption_key)
    line = said_in_one_line(cli("status", env=env, unset=["CONNECTIONS_ENCRYPTION_KEYS"]))
    assert said in line
    assert encryption_key not in line
    assert "not-a-fernet-key" not in line


def test_a_malformed_database_url_is_one_line_without_its_password(
    encryption_key: str, tmp_path: Path
) -> None:
    env = {
        "CONNECTIONS_DATABASE_URL": "postgresql://me:pa55word-xyz@127.0.0.1:notaport/db",
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_VAR_DIR": str(tmp_path),
    }
    line = said_in_one_line(cli("accounts", "list", "--all-orgs", env=env))
    assert "CONNECTIONS_DATABASE_URL is not a database URL" in line
    assert "pa55word-xyz" not in line


def test_a_malformed_setting_is_one_line(database_url: str, encryption_key: str) -> None:
    env = {
        "CONNECTIONS_DATABASE_URL": database_url,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_CHECK_INTERVAL_SECONDS": "1",
    }
    line = said_in_one_line(cli("accounts", "list", "--all-orgs", env=env))
    assert line == (
        "error: CONNECTIONS_CHECK_INTERVAL_SECONDS: Input should be greater than or equal to 10"
    )


def test_processes_refuse_to_start_in_one_line(
    database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    """`ingest` without keys, `fortnox-stream` without its client secret; and under JSON logs
    the one line is JSON too."""
    env = {"CONNECTIONS_DATABASE_URL": database_url, "CONNECTIONS_VAR_DIR": str(tmp_path)}
    unset = ["CONNECTIONS_ENCRYPTION_KEYS", "CONNECTIONS_FORTNOX_CLIENT_SECRET"]
    ingest = cli("ingest", "--port", str(free_port()), env=env, unset=unset, log_format="console")
    assert "CONNECTIONS_ENCRYPTION_KEYS is required" in said_in_one_line(ingest)
    stream = cli(
        "fortnox-stream",
        env={**env, "CONNECTIONS_ENCRYPTION_KEYS": encryption_key},
        unset=unset,
        log_format="console",
    )
    assert "CONNECTIONS_FORTNOX_CLIENT_SECRET is required" in said_in_one_line(stream)

    logged = cli("ingest", "--port", str(free_port()), env=env, unset=unset)
    assert logged.returncode == 2
    assert logged.stderr == ""
    [line] = logged.stdout.splitlines()
    assert json.loads(line)["error"]["code"] == "configuration"
