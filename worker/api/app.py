"""Assemble the ASGI app `connections ingest` serves."""

from __future__ import annotations

from starlette.applications import Starlette

from worker.api import health, readapi
from worker.runtime import get_deps
from worker.service.deps import Deps
from worker.settings import Settings, get_settings


def broker_ping() -> None:
    from worker.celery_app import app as celery

    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def create_app(settings: Settings | None = None, deps: Deps | None = None) -> Starlette:
    settings = settings or get_settings()
    deps = deps or get_deps()
    token = settings.service_token.get_secret_value() if settings.service_token else None
    return Starlette(routes=[*health.routes(deps, broker_ping), *readapi.routes(deps, token)])
