"""Assemble the ASGI app `connections ingest` serves."""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.types import ASGIApp

from worker.api import connect, health, inbox_writer, jobs, openapi, readapi, webhooks
from worker.runtime import get_deps
from worker.service.deps import Deps
from worker.settings import Settings, get_settings


def broker_ping() -> None:
    from worker.celery_app import app as celery

    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def queue_events(ids: list[uuid.UUID]) -> None:
    from worker.celery_app import app as celery
    from worker.tasks.events import enqueue

    enqueue(celery, ids)


def create_app(
    settings: Settings | None = None,
    deps: Deps | None = None,
    enqueue: inbox_writer.Enqueue | None = None,
    send_job: connect.SendJob | None = None,
) -> ASGIApp:
    """The webhook endpoints in front; health and the read API behind them, on Starlette."""
    settings = settings or get_settings()
    deps = deps or get_deps()
    token = settings.service_token.get_secret_value() if settings.service_token else None
    writer = inbox_writer.InboxWriter(deps.db, enqueue or queue_events)
    rest = Starlette(
        routes=[
            *health.routes(deps, broker_ping),
            *readapi.routes(deps, token),
            *connect.routes(deps, settings, send_job),  # `send_job`: tests run the job in-process
            *jobs.routes(deps, settings, send_job),
            openapi.route(),
        ]
    )
    return webhooks.Webhooks(settings, deps, writer, rest)
