"""Every operator command in-process (click's runner) against the run's PostgreSQL database and a
Redis database of its own: each `--json` answer parses and has the read API's shapes, each
failure is one line and a non-zero exit, and every command and option has help."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import click
import pytest
import structlog
from click.testing import CliRunner

from connectors.stripe import parse_stripe
from models import AccountStatus, Database, ProviderIncident, utc_now
from tests.e2e import harness
from tests.fixtures.ingest import stripe_delivery, stripe_event
from tests.integration.jobs import ADMIN, add, link
from tests.simulators.stripe import StripeSimulator
from worker.cli import main
from worker.service import accounts, inbox, views
from worker.service.deps import Deps
from worker.settings import get_settings

ACCOUNT_ID = "00000000-0000-0000-0000-000000000000"


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Ran]


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    number = harness.allocate_redis_db()
    yield harness.redis_url(number)
    harness.release_redis_db(number)


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    encryption_key: str,
    broker: str,
    db: Database,
    tmp_path: Any,
) -> Iterator[Run]:
    """`connections ...` in this process with the environment an operator's shell would have;
    the logging the command configures is put back afterwards."""
    env = {
        "CONNECTIONS_DATABASE_URL": database_url,
        "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_VAR_DIR": str(tmp_path),
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "WARNING",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CONNECTIONS_EVENTS_REDIS_URL", raising=False)
    structlog_config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    get_settings.cache_clear()

    def run(*args: str, environ: dict[str, str] | None = None) -> Ran:
        get_settings.cache_clear()
        result = CliRunner().invoke(main, list(args), env=environ)
        return Ran(result.exit_code, result.stdout, result.stderr)

    yield run
    get_settings.cache_clear()
    structlog.configure(**structlog_config)
    root.handlers[:], root.level = handlers, level
    from worker.celery_app import app

    app.set_current()  # the commands' client apps made themselves current


@pytest.fixture
def seeded(deps: Deps, stripe_sim: StripeSimulator, db: Database) -> dict[str, Any]:
    """A connected Stripe account used by an integration, an unroutable event, and an open
    incident; the account's events stay unpublished (no events Redis in these tests)."""
    _, key = stripe_sim.add_account("Cli AB")
    added = add(deps, credentials={"api_key": key})
    link(deps, integration_id="wf-1", account_id=added["account"]["id"], name="Sync")
    other = add(deps, org_id="org-2", credentials={"api_key": stripe_sim.add_account()[1]})
    body, _ = stripe_delivery(stripe_event("invoice.paid", account="acct_nowhere"))
    with db.engine.begin() as conn:
        [event] = inbox.store_events(conn, [inbox.Incoming(parse_stripe(body))])
    inbox.process_events(db, [event.id])
    with db.unit_of_work() as session:
        session.add(
            ProviderIncident(
                provider="stripe",
                reason="Stripe answers 503 to most checks",
                started_at=utc_now() - timedelta(minutes=5),
            )
        )
    return {
        "account": added["account"],
        "other": other["account"],
        "job": added,
        "event_id": str(event.id),
        "key": key,
    }


def one_line_error(ran: Ran, as_json: bool) -> dict[str, Any]:
    """The failure's error object, after asserting it was said in exactly one line."""
    assert ran.code != 0
    if as_json:
        assert ran.err == ""
        [line] = ran.out.splitlines()
        error = json.loads(line)["error"]
        assert set(error) >= {"message"}
        assert "reason" in error or "code" in error
        return dict(error)
    assert ran.out == ""
    [line] = ran.err.splitlines()
    assert line.startswith("error: ")
    return {"message": line.removeprefix("error: ")}


def test_json_answers_have_the_read_api_shapes(
    cli: Run, seeded: dict[str, Any], deps: Deps
) -> None:
    account_id = seeded["account"]["id"]
    with deps.db.unit_of_work() as session:
        listed = accounts.list_accounts(session, org_id="org-1", actor=ADMIN)
        account = accounts.load_account(session, "org-1", uuid.UUID(account_id))
        details = views.details(session, account)

    assert cli("accounts", "list", "--org", "org-1", "--json").json() == {"accounts": listed}
    every = cli("accounts", "list", "--all-orgs", "--json").json()["accounts"]
    assert {a["id"] for a in every} == {account_id, seeded["other"]["id"]}
    connected = cli("accounts", "list", "--all-orgs", "--status", "connected", "--json").json()
    assert len(connected["accounts"]) == 2
    assert cli("accounts", "list", "--all-orgs", "--status", "error", "--json").json() == {
        "accounts": []
    }

    shown = cli("accounts", "show", account_id, "--json")
    assert shown.json() == details
    assert seeded["key"] not in shown.out
    assert cli("accounts", "errors", account_id, "--json").json() == {"errors": []}
    history = cli("accounts", "history", account_id, "--json").json()
    assert [h["to"] for h in history["status_history"]] == ["connected"]
    assert history["status_history"] == details["status_history"]

    assert cli("jobs", "show", seeded["job"]["job_id"], "--json").json() == seeded["job"]
    events = cli("webhooks", "list", "--json").json()
    assert [(e["id"], e["status"]) for e in events["events"]] == [
        (seeded["event_id"], "unroutable")
    ]
    incidents = cli("incidents", "list", "--json").json()
    assert [(i["provider"], i["ended_at"]) for i in incidents["incidents"]] == [("stripe", None)]

    replayed = cli("webhooks", "replay", seeded["event_id"], "--json").json()
    assert (replayed["id"], replayed["status"], replayed["queued"]) == (
        seeded["event_id"],
        "received",
        True,
    )
    assert cli("accounts", "rotate-keys", "--json").json() == {"reencrypted": 2}


def test_text_answers_name_what_the_json_holds(cli: Run, seeded: dict[str, Any]) -> None:
    account_id = seeded["account"]["id"]
    listed = cli("accounts", "list", "--org", "org-1")
    assert listed.code == 0
    assert account_id in listed.out
    assert "connected" in listed.out
    assert "Sync (wf-1)" in cli("accounts", "show", account_id).out
    assert "-> connected" in cli("accounts", "history", account_id).out
    assert cli("accounts", "errors", account_id).out.strip() == "no errors"
    assert "OPEN" in cli("incidents", "list").out
    assert "acct_nowhere" in cli("webhooks", "list").out


def test_status_counts_what_waits_and_says_no_worker_answered(
    cli: Run, seeded: dict[str, Any]
) -> None:
    figures = cli("status", "--timeout", "0.5", "--json").json()
    assert figures["accounts"] == {"total": 2, "by_provider": {"stripe": {"connected": 2}}}
    assert [i["provider"] for i in figures["incidents"]] == ["stripe"]
    assert figures["inbox"]["unroutable"]["count"] == 1
    assert figures["inbox"]["unroutable"]["age_seconds"] >= 0
    assert figures["inbox"]["received"] == {
        "count": 0,
        "capped": False,
        "oldest_at": None,
        "age_seconds": None,
    }
    unpublished = figures["outbox"]["unpublished"]
    assert unpublished["count"] >= 2  # at least each account's `account.added`
    assert figures["outbox"]["publishing"] is False
    assert figures["workers"]["answered"] == []
    assert figures["workers"]["problem"] is None

    screen = cli("status", "--timeout", "0.5")
    assert screen.code == 0
    assert "stripe" in screen.out
    assert "connected 2" in screen.out
    assert "1 unroutable" in screen.out
    assert "workers    none answered within 0.5s" in screen.out


def test_status_renders_when_the_broker_is_unreachable(cli: Run, seeded: dict[str, Any]) -> None:
    closed = f"redis://:hunter2-secret@127.0.0.1:{harness.free_port()}/0"
    environ = {"CONNECTIONS_BROKER_URL": closed, "CONNECTIONS_RESULT_BACKEND": closed}
    figures = cli("status", "--json", environ=environ).json()
    assert figures["workers"]["answered"] == []
    assert "broker unreachable" in figures["workers"]["problem"]
    screen = cli("status", environ=environ)
    assert screen.code == 0
    assert "workers    none answered (broker unreachable" in screen.out
    assert "hunter2-secret" not in screen.out + json.dumps(figures)


def test_check_no_wait_queues_the_check_and_answers_its_job_id(
    cli: Run, seeded: dict[str, Any]
) -> None:
    queued = cli("accounts", "check", seeded["account"]["id"], "--no-wait", "--json").json()
    assert queued["status"] == "queued"
    assert len(queued["job_id"]) == 36
    text = cli("accounts", "check", seeded["account"]["id"], "--no-wait")
    assert text.code == 0
    assert text.out.startswith("queued as job ")


ERRORS: list[tuple[list[str], str]] = [
    (["accounts", "show", ACCOUNT_ID], "no account"),
    (["accounts", "show", "nope"], "not an account id"),
    (["accounts", "errors", "nope"], "not an account id"),
    (["accounts", "history", ACCOUNT_ID], "no account"),
    (["accounts", "list"], "--org ORG or --all-orgs"),
    (["accounts", "list", "--org", "org-1", "--all-orgs"], "--org ORG or --all-orgs"),
    (["accounts", "list", "--org", "not an org!"], "org"),
    (["accounts", "list", "--all-orgs", "--status", "sleeping"], "sleeping"),
    (["accounts", "check", "nope"], "account id"),
    (["accounts", "check", ACCOUNT_ID, "--timeout", "0.3"], "no result within 0.3s"),
    (["jobs", "show", "nope"], "no finished job"),
    (["webhooks", "list", "--status", "bogus"], "unknown status"),
    (["webhooks", "replay", "evt_never_seen"], "no stored event"),
    (["incidents", "list", "--limit", "0"], "--limit"),
    (["accounts", "frobnicate"], "frobnicate"),
]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
@pytest.mark.parametrize(("args", "said"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_every_failure_is_one_line(cli: Run, args: list[str], said: str, as_json: bool) -> None:
    ran = cli(*args, *(["--json"] if as_json else []))
    error = one_line_error(ran, as_json)
    assert said in error["message"]


def test_a_refusal_names_its_reason_and_fields_under_json(cli: Run, db: Database) -> None:
    error = one_line_error(cli("accounts", "show", ACCOUNT_ID, "--json"), as_json=True)
    assert error["reason"] == "not_found"
    invalid = one_line_error(cli("accounts", "list", "--org", "no spaces", "--json"), True)
    assert invalid["reason"] == "invalid"
    assert "org" in invalid["fields"]


def test_a_check_with_no_broker_is_one_line(cli: Run, db: Database) -> None:
    closed = f"redis://127.0.0.1:{harness.free_port()}/0"
    environ = {"CONNECTIONS_BROKER_URL": closed, "CONNECTIONS_RESULT_BACKEND": closed}
    ran = cli("accounts", "check", ACCOUNT_ID, "--json", environ=environ)
    error = one_line_error(ran, as_json=True)
    assert error["code"] == "broker_unreachable"
    assert closed in error["message"]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


def test_every_command_and_option_has_help(cli: Run) -> None:
    found = list(commands(main))
    assert ("status",) in found
    assert ("accounts", "check") in found
    for path in found:
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        assert command.help, f"{' '.join(path)} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{' '.join(path)} {param.opts[0]} has no help"
        ran = cli(*path, "--help")
        assert ran.code == 0, ran.err
        assert "Usage: " in ran.out


def test_the_status_filter_offers_every_status() -> None:
    from worker.cli.accounts import STATUSES

    assert STATUSES == tuple(s.value for s in AccountStatus)


def test_version(cli: Run) -> None:
    ran = cli("--version")
    assert ran.code == 0
    assert ran.out.startswith("connections, version ")
