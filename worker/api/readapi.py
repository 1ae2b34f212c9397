"""The internal read API: other services read accounts and job results as the actor they name."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from worker.service import accounts, audit, inputs, views
from worker.service.deps import Deps
from worker.service.jobs import stored_result
from worker.service.outcomes import Action, Reason, Rejected, parse_actor, require

JOB_ID_MAX = 155  # models.Job.id

STATUS_FOR = {
    Reason.FORBIDDEN: 403,
    Reason.NOT_FOUND: 404,
    Reason.INVALID: 400,
}


def routes(deps: Deps, token: str | None) -> list[Route]:
    def guarded(handler: Callable[[Request, Session], dict[str, Any]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> JSONResponse:
            if not _authorized(request, token):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            try:
                # Reads are short; a thread keeps the event loop free for webhooks.
                body = await run_in_threadpool(_read, deps, handler, request)
            except Rejected as exc:
                payload = {"error": exc.reason.value, "message": exc.message, **exc.extra}
                return JSONResponse(payload, status_code=STATUS_FOR.get(exc.reason, 400))
            return JSONResponse(body)

        return endpoint

    return [
        Route("/api/v1/orgs/{org_id}/accounts", guarded(_list), methods=["GET"]),
        Route("/api/v1/orgs/{org_id}/accounts/{account_id}", guarded(_details), methods=["GET"]),
        Route("/api/v1/jobs/{job_id}", guarded(_job), methods=["GET"]),
        Route("/api/v1/orgs/{org_id}/audit", guarded(_audit), methods=["GET"]),
    ]


def _authorized(request: Request, token: str | None) -> bool:
    if not token:
        return False  # no token configured: no read API
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.encode(), token.encode())


def _actor(request: Request) -> dict[str, Any]:
    role = request.headers.get("x-actor-role")
    user = request.headers.get("x-actor-id")
    if not role or not user:
        raise Rejected(
            Reason.INVALID,
            "X-Actor-Id and X-Actor-Role are required",
            fields={"X-Actor-Role": "required", "X-Actor-Id": "required"},
        )
    return {"user_id": user, "role": role}


def _read(
    deps: Deps, handler: Callable[[Request, Session], dict[str, Any]], request: Request
) -> Any:
    with deps.db.unit_of_work() as session:
        return handler(request, session)


def _list(request: Request, session: Session) -> dict[str, Any]:
    listed = accounts.list_accounts(
        session, org_id=request.path_params["org_id"], actor=_actor(request)
    )
    return {"accounts": listed}


def _details(request: Request, session: Session) -> dict[str, Any]:
    actor = parse_actor(_actor(request))
    org = inputs.org_id(request.path_params["org_id"])
    require(actor, Action.DETAILS)
    try:
        target = uuid.UUID(request.path_params["account_id"])
    except ValueError:
        raise Rejected(Reason.NOT_FOUND, "no such account in this organization") from None
    return views.details(session, accounts.load_account(session, org, target))


def _job(request: Request, session: Session) -> dict[str, Any]:
    _actor(request)
    job_id = request.path_params["job_id"]
    # No stored id is longer or holds a NUL, which PostgreSQL text refuses outright (a 500).
    if len(job_id) > JOB_ID_MAX or "\x00" in job_id:
        raise Rejected(Reason.NOT_FOUND, "no finished job with this id")
    result = stored_result(session, job_id)
    if result is None:
        raise Rejected(Reason.NOT_FOUND, "no finished job with this id")
    return result


def _audit(request: Request, session: Session) -> dict[str, Any]:
    return audit.read(
        session,
        org_id=request.path_params["org_id"],
        actor=_actor(request),
        account_id=request.query_params.get("account_id"),
    )
