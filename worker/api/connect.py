"""Connect sessions over HTTP: `POST /api/v1/orgs/{org_id}/connect-sessions` and its read (the
service token and actor headers, as the read API), and `GET /connect/{type}/callback`, where the
providers send the browser back after authorizing.

The callback queues the add or update job to the worker and waits a few seconds for its result,
so the browser usually lands on the outcome; a job that takes longer leaves the session
`pending`, and its read settles it from the stored job result later. No page or URL built here
holds a code or a secret, and every answer tells the browser not to pass the callback's URL (which
holds the code) on as a referrer.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import structlog
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from connectors.registry import PROVIDERS
from models import ConnectSession, ConnectStatus, utc_now
from worker.api.readapi import STATUS_FOR, _actor, _authorized
from worker.service import connect, connect_callback
from worker.service.connect import ConnectConfig
from worker.service.connect_callback import JobOrder
from worker.service.connect_state import StateRefused
from worker.service.deps import Deps
from worker.service.outcomes import Rejected
from worker.settings import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")
SendJob = Callable[[JobOrder], None]

# How long the callback waits for its job before answering with `pending`.
CALLBACK_WAIT_SECONDS = 8.0
POLL_SECONDS = 0.1
BODY_MAX = 16 * 1024  # a session's body is a few short fields
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def send_with_celery(order: JobOrder) -> None:
    """Queue the job on the `jobs` queue with its own id as the Celery task id."""
    from worker.celery_app import app as celery

    celery.send_task(order.name, kwargs=order.kwargs, task_id=order.job_id, queue="jobs")


def routes(deps: Deps, settings: Settings, send_job: SendJob | None = None) -> list[Route]:
    config = ConnectConfig.from_settings(settings)
    token = settings.service_token.get_secret_value() if settings.service_token else None
    send = send_job or send_with_celery

    def unit(work: Callable[[Session], T]) -> T:
        with deps.db.unit_of_work() as session:
            return work(session)

    async def create(request: Request) -> Response:
        if not _authorized(request, token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        raw = await request.body()
        try:
            body = json.loads(raw) if len(raw) <= BODY_MAX else None
        except ValueError:
            body = None  # refused below as not an object, once the actor is checked
        org_id = request.path_params["org_id"]
        try:
            answer = await run_in_threadpool(
                unit,
                lambda s: connect.create(
                    s, deps, config, org_id=org_id, actor=_actor(request), body=body, now=utc_now()
                ),
            )
        except Rejected as exc:
            return _refusal(exc)
        log.info("connect_session_created", org_id=org_id, session_id=answer["id"])
        return JSONResponse(answer, status_code=201)

    async def read(request: Request) -> Response:
        if not _authorized(request, token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        params = request.path_params
        try:
            answer = await run_in_threadpool(
                unit,
                lambda s: connect.read(
                    s,
                    org_id=params["org_id"],
                    actor=_actor(request),
                    session_id=params["session_id"],
                    now=utc_now(),
                ),
            )
        except Rejected as exc:
            return _refusal(exc)
        return JSONResponse(answer)

    async def callback(request: Request) -> Response:
        if request.method != "GET":  # a HEAD (a link checker) must not use the session
            return Response(status_code=405, headers={"Allow": "GET", **PRIVATE})
        type_ = request.path_params["type"]
        if type_ not in PROVIDERS:
            return page(404, "Not found", "There is no such service to connect.")
        pairs = request.query_params.multi_items()
        if len({k for k, _ in pairs}) != len(pairs):
            return page(400, "Not connected", "The provider's answer is malformed. Start again.")
        query = dict(pairs)
        try:
            begun = await run_in_threadpool(
                unit,
                lambda s: connect_callback.begin(
                    s, deps, config, type_=type_, query=query, now=utc_now()
                ),
            )
        except (StateRefused, Rejected) as exc:
            log.info("connect_callback_refused", type=type_, why=getattr(exc, "kind", "invalid"))
            return page(400, "Not connected", exc.message)
        if begun.job is not None:
            await _run(begun.job, begun.session_id)
        view, return_url = await run_in_threadpool(
            unit, lambda s: connect.outcome(s, begun.session_id, utc_now())
        )
        log.info("connect_callback", session_id=view["id"], status=view["status"])
        if return_url is not None:
            back = httpx.URL(return_url).copy_merge_params(
                {"session": view["id"], "status": view["status"]}
            )
            return RedirectResponse(str(back), status_code=303, headers=PRIVATE)
        return outcome_page(view)

    async def _run(order: JobOrder, session_id: Any) -> None:
        """Send the job, then wait (a few seconds at most) for its stored result."""
        try:
            await run_in_threadpool(send, order)
        except Exception as exc:  # the broker is unreachable: the session cannot go on
            log.error(
                "connect_job_not_queued", session_id=str(session_id), error=type(exc).__name__
            )
            await run_in_threadpool(unit, lambda s: connect_callback.not_queued(s, session_id))
            return
        deadline = asyncio.get_running_loop().time() + CALLBACK_WAIT_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            status = await run_in_threadpool(unit, lambda s: _settled(s, session_id))
            if status != ConnectStatus.PENDING:
                return
            await asyncio.sleep(POLL_SECONDS)

    return [
        Route("/api/v1/orgs/{org_id}/connect-sessions", create, methods=["POST"]),
        Route("/api/v1/orgs/{org_id}/connect-sessions/{session_id}", read, methods=["GET"]),
        Route("/connect/{type}/callback", callback, methods=["GET"]),
    ]


def _settled(session: Session, session_id: Any) -> str | None:
    row = session.get(ConnectSession, session_id)
    if row is None:
        return None
    connect.settle(session, row)
    return row.status


def _refusal(exc: Rejected) -> JSONResponse:
    payload = {"error": exc.reason.value, "message": exc.message, **exc.extra}
    return JSONResponse(payload, status_code=STATUS_FOR.get(exc.reason, 400))


def outcome_page(view: dict[str, Any]) -> HTMLResponse:
    """What happened, in words, for a session with nowhere to send the browser back to."""
    status = view["status"]
    if status == ConnectStatus.SUCCEEDED:
        name = (view.get("account") or {}).get("name") or "The account"
        return page(200, "Connected", f"{name} is connected. You can close this page.")
    if status == ConnectStatus.PENDING:
        return page(
            200,
            "Connecting",
            "The connection is still being confirmed; where you started, it will show as "
            "connected or say what went wrong.",
        )
    return page(200, "Not connected", view.get("message") or "The connection did not succeed.")


def page(status_code: int, title: str, text: str) -> HTMLResponse:
    """A plain page; everything in it escaped."""
    body = (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return HTMLResponse(body, status_code=status_code, headers=PRIVATE)
