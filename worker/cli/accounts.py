"""`connections accounts`: list, show, errors, history, check now, and key rotation."""

from __future__ import annotations

import sys
import uuid

import click

from worker.cli import render
from worker.cli.base import emit, fail, in_session, open_deps


@click.group()
def accounts() -> None:
    """Look at and check accounts."""


@accounts.command("list")
@click.option("--org", "org_id", required=True)
@click.option("--json", "as_json", is_flag=True)
def accounts_list(org_id: str, as_json: bool) -> None:
    from worker import operator

    emit(in_session(lambda s: operator.list_accounts(s, org_id)), as_json, render.accounts)


@accounts.command("show")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_show(account_id: str, as_json: bool) -> None:
    from worker import operator
    from worker.service import views

    details = in_session(lambda s: views.details(s, operator.account_by_id(s, account_id)))
    emit(details, as_json, render.details)


@accounts.command("errors")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_errors(account_id: str, as_json: bool) -> None:
    from worker import operator

    emit(in_session(lambda s: operator.errors(s, account_id)), as_json, render.errors)


@accounts.command("history")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_history(account_id: str, as_json: bool) -> None:
    from worker import operator

    emit(in_session(lambda s: operator.history(s, account_id)), as_json, render.history)


@accounts.command("check")
@click.argument("account_id")
@click.option("--json", "as_json", is_flag=True)
def accounts_check(account_id: str, as_json: bool) -> None:
    """Check now, in this process, and record the outcome like a scheduled check."""
    from worker.service import inputs
    from worker.tasks.table import run_as_job

    deps = open_deps()
    try:
        inputs.account_id(account_id)
    except Exception:
        fail(f"not an account id: {account_id!r}")
    result = run_as_job(
        deps, "accounts.check", {"account_id": account_id}, job_id=f"cli-{uuid.uuid4()}"
    )
    emit(result, as_json, render.job_result)
    if result["status"] != "succeeded":
        sys.exit(1)


@accounts.command("rotate-keys")
def accounts_rotate_keys() -> None:
    """Re-encrypt every account's credentials under the newest encryption key."""
    from worker import operator

    count = operator.rotate_keys(open_deps())
    click.echo(f"re-encrypted the credentials of {count} accounts under the newest key")
