"""`/healthz` (the process lives), `/readyz` (database and broker reachable), `/metrics`."""

from __future__ import annotations

from collections.abc import Callable

import redis
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.connection import parse_url
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.observe.serve import group_registry
from worker.service.deps import Deps
from worker.settings import get_settings


def routes(deps: Deps, broker_ping: Callable[[], None]) -> list[Route]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        for name, probe in (("database", lambda: _ping_db(deps)), ("broker", broker_ping)):
            try:
                await run_in_threadpool(probe)
                checks[name] = "ok"
            except Exception as exc:  # any failure means not ready; say which
                checks[name] = f"unavailable: {type(exc).__name__}"
        checks["redis_memory"] = await run_in_threadpool(_redis_memory)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", **checks},
            status_code=200 if ready else 503,
        )

    # With several ingest processes, each answers with all of theirs (`worker.observe.group`).
    registry = group_registry()

    async def metrics(_: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


# /readyz fails once a Redis is this full: before `maxmemory` (with `noeviction`, as the broker
# needs) makes it refuse writes, so the ingest is taken out of rotation while Redis still works.
REDIS_MEMORY_LIMIT = 0.9


def memory_problem(used: int, maximum: int, limit: float = REDIS_MEMORY_LIMIT) -> str | None:
    """Why a Redis using `used` of `maximum` bytes is too full to be ready; None when it is not
    (or has no `maxmemory`: then the host's memory is its bound, which Redis cannot report)."""
    if maximum <= 0 or used <= limit * maximum:
        return None
    return (
        f"uses {used / maximum:.0%} of maxmemory ({used / 2**20:.1f} of {maximum / 2**20:.1f} MB);"
        f" not ready above {limit:.0%}, writes are refused at 100%"
    )


def _redis_memory() -> str:
    """'ok', or which Redis the deployment writes to (broker, result backend, events stream) is
    nearly full. One that cannot be read is not judged here: the broker check reports its own,
    and the events stream waits in the outbox while its Redis is away."""
    settings = get_settings()
    servers: dict[str, str] = {}  # one INFO per server: the URLs often differ only in the db
    for url in (settings.broker_url, settings.result_backend, settings.events_redis_url):
        if url and url.startswith(("redis://", "rediss://", "unix://")):
            parts = parse_url(url)
            where = (
                parts.get("path") or f"{parts.get('host', 'localhost')}:{parts.get('port', 6379)}"
            )
            servers.setdefault(str(where), url)
    problems = []
    for where, url in servers.items():
        try:
            with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
                info = client.info("memory")
        except redis.RedisError:
            continue
        problem = memory_problem(int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
        if problem:
            problems.append(f"redis {where} {problem}")
    return "; ".join(problems) or "ok"


def _ping_db(deps: Deps) -> None:
    with deps.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
