"""`connections`: run the processes, migrate, and look at accounts, jobs and webhooks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from worker.settings import get_settings


def _emit(value: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, indent=2, default=str) if as_json else render(value))


def _deps() -> Any:
    from worker.logconfig import configure_logging
    from worker.runtime import get_deps

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    return get_deps()


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """The connections worker."""


@main.command()
def migrate() -> None:
    """Run database migrations to head."""
    from models.migrate import upgrade

    upgrade(get_settings().database_url)
    click.echo("database is at the newest migration")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
def ingest(host: str, port: int, workers: int) -> None:
    """Serve the ingest endpoint and the internal read API."""
    import uvicorn

    settings = get_settings()
    from worker.logconfig import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "worker.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Everything on one machine on the embedded defaults: migrations, ingest, worker and beat."""
    from models.migrate import upgrade

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    click.echo(f"database ready: {settings.database_url}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    commands = [
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker",
            "worker",
            "--beat",
            "--pool=solo",
            "--loglevel=INFO",
            "--schedule",
            str(settings.var_dir / "beat-schedule"),
        ],
        [sys.executable, "-m", "worker.cli", "ingest", "--host", host, "--port", str(port)],
    ]
    children = [subprocess.Popen(cmd, env=env) for cmd in commands]
    click.echo(f"worker and beat running; ingest and read API on http://{host}:{port}")

    def stop(*_: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    codes = [child.returncode for child in children]
    sys.exit(0 if all(c in (0, -signal.SIGTERM, None) for c in codes) else 1)


@main.group()
def accounts() -> None:
    """Look at and check accounts."""


@accounts.command("list")
@click.option("--org", "org_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def accounts_list(org_id: str, as_json: bool) -> None:
    from worker import operator

    deps = _deps()
    with deps.db.unit_of_work() as session:
        rows = operator.list_accounts(session, org_id)
    _emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(f"{r['id']}  {r['type']:8} {r['status']:12} {r['name']}" for r in rs)
            or "no accounts"
        ),
    )


def _one(
    account_id: str, read: Callable[[Any, str], Any], as_json: bool, render: Callable[[Any], str]
) -> None:
    from worker.service.outcomes import Rejected

    deps = _deps()
    try:
        with deps.db.unit_of_work() as session:
            value = read(session, account_id)
    except Rejected as exc:
        _fail(exc.message)
    _emit(value, as_json, render)


@accounts.command("show")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_show(account_id: str, as_json: bool) -> None:
    from worker import operator
    from worker.service import views

    _one(
        account_id,
        lambda s, a: views.details(s, operator.account_by_id(s, a)),
        as_json,
        _render_details,
    )


@accounts.command("errors")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_errors(account_id: str, as_json: bool) -> None:
    from worker import operator

    _one(
        account_id,
        operator.errors,
        as_json,
        lambda rows: (
            "\n".join(
                f"{e['code']:22} x{e['occurrences']:<4} first {e['first_occurred_at']} "
                f"last {e['last_occurred_at']} "
                f"{'resolved ' + e['resolved_at'] if e['resolved_at'] else 'OPEN'}  {e['message']}"
                for e in rows
            )
            or "no errors"
        ),
    )


@accounts.command("history")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_history(account_id: str, as_json: bool) -> None:
    from worker import operator

    _one(
        account_id,
        operator.history,
        as_json,
        lambda rows: (
            "\n".join(
                f"{c['occurred_at']}  {c['from'] or '-':12} -> {c['to']:12} "
                f"[{c['source']}] {c['reason']}"
                for c in rows
            )
            or "no status changes"
        ),
    )


@accounts.command("check")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_check(account_id: str, as_json: bool) -> None:
    """Check now, in this process, and record the outcome like a scheduled check."""
    import uuid

    from worker.service import checks, inputs
    from worker.service.jobs import run_job

    deps = _deps()
    try:
        target = inputs.account_id(account_id)
    except Exception:
        _fail(f"not an account id: {account_id!r}")
    result = run_job(
        deps.db,
        job_id=f"cli-{uuid.uuid4()}",
        name="accounts.check",
        request_id=None,
        org_id=None,
        work=lambda session: checks.check_now(session, deps, target),
    )
    _emit(result, as_json, lambda r: f"{r['status']}: {r['message']}")
    if result["status"] != "succeeded":
        sys.exit(1)


@accounts.command("rotate-keys")
def accounts_rotate_keys() -> None:
    """Re-encrypt every account's credentials under the newest encryption key."""
    from worker import operator

    count = operator.rotate_keys(_deps())
    click.echo(f"re-encrypted the credentials of {count} accounts under the newest key")


@main.group()
def jobs() -> None:
    """Look at job results."""


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    from worker.service.jobs import stored_result

    deps = _deps()
    with deps.db.unit_of_work() as session:
        result = stored_result(session, job_id)
    if result is None:
        _fail(f"no finished job {job_id}")
    _emit(result, as_json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))


@main.group()
def webhooks() -> None:
    """Look at stored provider events and replay the unroutable or failed ones."""


@webhooks.command("list")
@click.option(
    "--status",
    default=None,
    help="received, processed, unroutable, failed or all (default: unroutable and failed)",
)
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def webhooks_list(status: str | None, limit: int, as_json: bool) -> None:
    from worker.service import inbox
    from worker.service.outcomes import Rejected

    deps = _deps()
    try:
        with deps.db.unit_of_work() as session:
            rows = inbox.list_events(session, status, limit)
    except Rejected as exc:
        _fail(exc.message)
    _emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['id']}  {r['provider']:8} {r['status']:10} {r['topic']:32} "
                f"{r['route_key'] or '-'}  attempts {r['attempts']}"
                + (f"  {r['last_error']}" if r["last_error"] else "")
                for r in rs
            )
            or "no events"
        ),
    )


@webhooks.command("replay")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True)
def webhooks_replay(event_id: str, as_json: bool) -> None:
    """Process an unroutable or failed event again (by inbox id or provider event id)."""
    from worker.service import inbox
    from worker.service.outcomes import Rejected

    deps = _deps()
    try:
        with deps.db.unit_of_work() as session:
            view = inbox.replay(session, event_id)
    except Rejected as exc:
        _fail(exc.message)
    try:
        from worker.celery_app import app as celery
        from worker.tasks.events import enqueue

        enqueue(celery, [view["id"]])
        view["queued"] = True
    except Exception as exc:  # the row is `received` again: the sweeper queues it
        view["queued"] = False
        view["queue_error"] = type(exc).__name__
    _emit(
        view,
        as_json,
        lambda v: (
            f"{v['id']} is received again; "
            + ("queued for processing" if v["queued"] else "the sweeper will queue it")
        ),
    )


@main.group()
def incidents() -> None:
    """Provider outages the scheduled checks detected."""


@incidents.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def incidents_list(limit: int, as_json: bool) -> None:
    """Open incidents first, then the most recent ended ones."""
    from worker.service.incidents import list_incidents

    deps = _deps()
    with deps.db.unit_of_work() as session:
        rows = list_incidents(session, limit=limit)
    _emit(
        rows,
        as_json,
        lambda rs: (
            "\n".join(
                f"{r['id']}  {r['provider']:8} {'OPEN' if r['ended_at'] is None else 'ended':6}"
                f" started {r['started_at']}"
                f"{' ended ' + r['ended_at'] if r['ended_at'] else ''}"
                f"  failed checks {r['failed_checks']}  {r['reason']}"
                for r in rs
            )
            or "no incidents"
        ),
    )


@main.command("fortnox-stream")
def fortnox_stream() -> None:
    """Listen to the Fortnox topics stream; every event goes into the inbox."""
    from worker.fortnox_stream import run

    run(get_settings(), _deps())


def _render_details(d: dict[str, Any]) -> str:
    lines = [
        f"{d['name']} ({d['type']}) {d['id']}",
        f"  org: {d['org_id']}   status: {d['status']}   last checked: {d['last_checked_at']}",
        f"  connection: {json.dumps(d['connection'])}",
        f"  metadata: {json.dumps(d['metadata'])}",
        "  integrations: "
        + (", ".join(f"{i['name']} ({i['id']})" for i in d["integrations"]) or "none"),
        "  errors:",
        *[
            f"    {e['code']} x{e['occurrences']} {'open' if not e['resolved_at'] else 'resolved'}:"
            f" {e['message']}"
            for e in d["errors"]
        ],
        "  status history:",
        *[
            f"    {c['occurred_at']} {c['from']} -> {c['to']} ({c['source']}): {c['reason']}"
            for c in d["status_history"]
        ],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
