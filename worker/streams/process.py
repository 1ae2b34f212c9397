"""The `connections fortnox-stream` process: the listener's options from the Fortnox settings,
stopped by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal

import structlog

from connectors.fortnox import FortnoxSettings
from models import Database
from worker.observe.serve import serve_alone
from worker.service import notify
from worker.service.deps import Deps
from worker.streams.fortnox import FortnoxListener, ListenerOptions

log = structlog.get_logger(__name__)


def provider_settings(deps: Deps) -> FortnoxSettings:
    """This process's Fortnox settings, as the registry composed them."""
    settings = deps.connectors.settings["fortnox"]
    assert isinstance(settings, FortnoxSettings)
    return settings


def options_from(settings: FortnoxSettings, db: Database) -> ListenerOptions:
    if settings.client_secret is None:
        raise SystemExit("CONNECTIONS_FORTNOX_CLIENT_SECRET is required for the Fortnox stream")
    hears_changes = notify.listen_url(db) is not None
    return ListenerOptions(
        url=settings.ws_url,
        client_secret=settings.client_secret.get_secret_value(),
        topics=settings.topic_list(),
        # SQLite (dev) cannot announce changes: poll often instead.
        tenants_every=(
            settings.tenants_every_seconds if hears_changes else settings.tenants_poll_seconds
        ),
    )


def run(deps: Deps) -> None:
    """Listen until SIGTERM or SIGINT."""
    from worker.celery_app import app as celery
    from worker.tasks.events import enqueue

    options = options_from(provider_settings(deps), deps.db)
    serve_alone("fortnox-stream")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listener = FortnoxListener(deps, options, lambda ids: enqueue(celery, ids))
        log.info("fortnox_stream_starting", url=options.url, topics=options.topics)
        await listener.run(stop)
        log.info("fortnox_stream_stopped", stored=listener.stored)

    asyncio.run(main())
