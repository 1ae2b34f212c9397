"""`/healthz` (the process lives), `/readyz` (database and broker reachable), `/metrics`."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.service.deps import Deps


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
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", **checks},
            status_code=200 if ready else 503,
        )

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _ping_db(deps: Deps) -> None:
    with deps.db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
