"""`connections incidents`: provider outages the scheduled checks detected."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import emit, in_session, json_option


@click.group()
def incidents() -> None:
    """Provider outages the scheduled checks detected."""


@incidents.command("list")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many incidents.",
)
@json_option
def incidents_list(limit: int, as_json: bool) -> None:
    """Open incidents first, then the most recent ended ones."""
    from worker.service.incidents import list_incidents

    rows = in_session(lambda s: list_incidents(s, limit=limit))
    emit({"incidents": rows}, as_json, render.incidents)
