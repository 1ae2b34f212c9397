"""`connections audit`: the audit trail, every change to an organization's accounts and what
caused it, newest first (the read API's `GET /api/v1/orgs/{org_id}/audit`)."""

from __future__ import annotations

import json
from typing import Any

import click

from worker.cli.base import emit, in_session, json_option


@click.group()
def audit() -> None:
    """The audit trail: who or what changed an organization's accounts."""


@audit.command("list")
@click.option("--org", "org_id", required=True, help="The organization.")
@click.option("--account", "account_id", default=None, help="Only this account's entries.")
@click.option(
    "--limit",
    default=200,
    show_default=True,
    type=click.IntRange(min=1, max=10_000),
    help="At most this many entries.",
)
@json_option
def audit_list(org_id: str, account_id: str | None, limit: int, as_json: bool) -> None:
    """The organization's entries, newest first."""
    from worker.service.audit import entries

    rows = in_session(lambda s: entries(s, org_id, account_id=account_id, limit=limit))
    emit({"entries": rows}, as_json, render)


def render(listed: dict[str, Any]) -> str:
    return "\n".join(line(e) for e in listed["entries"]) or "no audit entries"


def line(e: dict[str, Any]) -> str:
    actor = e["actor"] or {}
    who = f"{actor.get('user_id')} ({actor.get('role')})" if actor else e["cause"]
    said = json.dumps(e["outcome"])
    details = f"  {json.dumps(e['details'], sort_keys=True)}" if e["details"] else ""
    return (
        f"{e['occurred_at']}  {e['action']:22} {said:12} by {who}"
        f"  account {e['account_id'] or '-'}  job {e['job_id'] or '-'}{details}"
    )
