"""`connections webhooks`: stored provider events, and replaying the unroutable or failed ones."""

from __future__ import annotations

from typing import Any

import click

from worker.cli import render
from worker.cli.base import emit, in_session, json_option


@click.group()
def webhooks() -> None:
    """Look at stored provider events and replay the unroutable or failed ones."""


@webhooks.command("list")
@click.option(
    "--status",
    default=None,
    help="received, processed, unroutable, failed or all (default: unroutable and failed).",
)
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="At most this many events, newest first.",
)
@json_option
def webhooks_list(status: str | None, limit: int, as_json: bool) -> None:
    """Stored provider events, newest first."""
    from worker.service import inbox

    rows = in_session(lambda s: inbox.list_events(s, status, limit))
    emit({"events": rows}, as_json, render.events)


@webhooks.command("replay")
@click.argument("event_id")
@json_option
def webhooks_replay(event_id: str, as_json: bool) -> None:
    """Process an unroutable or failed event again (by inbox id or provider event id)."""
    from worker.cli import queue
    from worker.service import inbox
    from worker.tasks.events import enqueue

    view: dict[str, Any] = in_session(lambda s: inbox.replay(s, event_id))
    try:
        with queue.client() as app:
            queue.ensure_broker(app)
            enqueue(app, [view["id"]])
        view["queued"] = True
    except Exception as exc:  # the row is `received` again: the sweeper queues it
        view["queued"] = False
        view["queue_error"] = getattr(exc, "code", type(exc).__name__)
    emit(view, as_json, render.replayed)
