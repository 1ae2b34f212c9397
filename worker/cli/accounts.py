"""`connections accounts`: list, show, errors, history, check now (queued to the worker), and key
rotation."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import Failure, emit, in_session, json_option, load_settings, open_deps

# `models.AccountStatus`'s values, written out so `--help` need not import the models.
STATUSES = ("pending", "connected", "degraded", "error", "disconnected")


@click.group()
def accounts() -> None:
    """Look at accounts, check one now, re-encrypt credentials."""


@accounts.command("list")
@click.option("--org", "org_id", default=None, help="Only this organization's accounts.")
@click.option("--all-orgs", is_flag=True, help="Every organization's accounts.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default=None,
    help="Only accounts in this status.",
)
@json_option
def accounts_list(org_id: str | None, all_orgs: bool, status: str | None, as_json: bool) -> None:
    """Accounts as summaries: id, type, status, name (by organization, oldest first)."""
    from worker import operator

    if (org_id is None) == (not all_orgs):
        raise click.UsageError("give --org ORG or --all-orgs (one of them)")
    rows = in_session(lambda s: operator.list_accounts(s, org_id, status))
    emit({"accounts": rows}, as_json, render.accounts)


@accounts.command("show")
@click.argument("account_id")
@json_option
def accounts_show(account_id: str, as_json: bool) -> None:
    """An account's details: connection, metadata, integrations, errors and status history."""
    from worker import operator
    from worker.service import views

    details = in_session(lambda s: views.details(s, operator.account_by_id(s, account_id)))
    emit(details, as_json, render.details)


@accounts.command("errors")
@click.argument("account_id")
@json_option
def accounts_errors(account_id: str, as_json: bool) -> None:
    """An account's errors, open ones first."""
    from worker import operator

    rows = in_session(lambda s: operator.errors(s, account_id))
    emit({"errors": rows}, as_json, render.errors)


@accounts.command("history")
@click.argument("account_id")
@json_option
def accounts_history(account_id: str, as_json: bool) -> None:
    """An account's status changes, newest first."""
    from worker import operator

    rows = in_session(lambda s: operator.history(s, account_id))
    emit({"status_history": rows}, as_json, render.history)


@accounts.command("check")
@click.argument("account_id")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the worker's result.",
)
@click.option("--no-wait", is_flag=True, help="Queue the check and print its job id at once.")
@json_option
def accounts_check(account_id: str, timeout: float, no_wait: bool, as_json: bool) -> None:
    """Check now: the check is queued to the worker, which records it like a scheduled one."""
    from worker.cli import queue
    from worker.service import inputs

    load_settings()
    inputs.account_id(account_id)  # a malformed id is refused before anything is queued
    with queue.client() as app:
        job_id = queue.queue_job(app, "accounts.check", {"account_id": account_id})
        if no_wait:
            emit({"job_id": job_id, "status": "queued"}, as_json, render.queued)
            return
        result = queue.wait_for(app, job_id, timeout)
    if result.get("status") != "succeeded":
        reason = str(result.get("reason") or result.get("status"))
        raise Failure(reason, str(result.get("message")), key="reason")
    emit(result, as_json, render.job_result)


@accounts.command("rotate-keys")
@json_option
def accounts_rotate_keys(as_json: bool) -> None:
    """Re-encrypt every account's credentials under the newest encryption key."""
    from worker import operator

    count = operator.rotate_keys(open_deps())
    emit({"reencrypted": count}, as_json, render.rotated)
