"""`connections status`: one screen of how the system is doing, from grouped counts and index
lookups (cheap at any size) and a ping of the workers over the broker."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import emit, in_session, json_option, load_settings


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds to wait for the workers to answer a ping.",
)
@json_option
def status(timeout: float, as_json: bool) -> None:
    """Accounts by provider and status, open incidents, inbox and outbox backlog and age, and the
    workers that answer."""
    from worker import operator
    from worker.cli import queue

    settings = load_settings()
    figures = in_session(operator.status)
    figures["outbox"]["publishing"] = settings.events_redis_url is not None
    with queue.client() as app:
        answered, problem = queue.workers(app, timeout)
    figures["workers"] = {"answered": answered, "problem": problem, "timeout_seconds": timeout}
    emit(figures, as_json, render.status)
