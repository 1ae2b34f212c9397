"""`connections incidents`: provider outages the scheduled checks detected."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import emit, in_session


@click.group()
def incidents() -> None:
    """Provider outages the scheduled checks detected."""


@incidents.command("list")
@click.option("--limit", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True)
def incidents_list(limit: int, as_json: bool) -> None:
    """Open incidents first, then the most recent ended ones."""
    from worker.service.incidents import list_incidents

    emit(in_session(lambda s: list_incidents(s, limit=limit)), as_json, render.incidents)
