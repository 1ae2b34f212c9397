"""The job intake over HTTP: `POST /api/v1/jobs`, for services that do not speak Celery and for
every job that carries credentials, and `GET /api/v1/orgs/{org_id}/jobs/{job_id}`, a job as one
organization reads it.

The intake checks a job at the edge (the task, its argument names, the request id, the org), seals
its `credentials` with the vault's keys into `credentials_sealed`, so the broker never holds them
in the clear, and queues it to the worker as any Celery sender would (`send_task` on `jobs`, its job
id as the task id). Everything else about the arguments is the job's to refuse, in its result.

A job id the intake makes is a UUID and a MAC over it and the job's organization, keyed from the
service token: no row exists until a worker claims the job, and the MAC is what tells a job that is
queued (made here, for this organization) from an id that is unknown or another organization's.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from models import Job
from worker.api.connect import SendJob, send_with_celery
from worker.api.readapi import JOB_ID_MAX, STATUS_FOR, _actor, _authorized
from worker.service import inputs, sealed
from worker.service.connect_callback import JobOrder
from worker.service.credentials import BOTH
from worker.service.deps import Deps
from worker.service.outcomes import Action, Reason, Rejected, parse_actor, require
from worker.settings import Settings
from worker.tasks.table import JOBS, NOT_AN_ARGUMENT, REQUEST_ID

log = structlog.get_logger(__name__)

BODY_MAX = 64 * 1024  # a job's arguments are a few short fields; sealed credentials fit far below
BODY_FIELDS = ("task", "kwargs", REQUEST_ID)
REQUEST_ID_MAX = 200  # models.Job.request_id
PURPOSE = b"standout-connections/job-id/v1"
NO_ORG = ""  # a job that names no organization (accounts.check): any organization may read it
NOT_FOUND = "no such job in this organization"


@dataclass(frozen=True)
class Intake:
    """A job request that passed the edge: `kwargs` hold no plaintext credentials."""

    task: str
    kwargs: dict[str, Any]
    request_id: str | None
    org_id: str  # NO_ORG for a task that takes none


def parse(body: Any) -> tuple[str, dict[str, Any], str | None]:
    """The task, its kwargs (with the request id in them) and the request id; `invalid`, naming
    the field, for anything the edge can tell is wrong. Nothing the sender sent is echoed."""
    if not isinstance(body, dict):
        raise inputs.invalid({"_": "the body must be a JSON object: {task, kwargs, request_id?}"})
    unknown = sorted(str(k) for k in body if k not in BODY_FIELDS)
    if unknown:
        raise inputs.invalid({k: "not a field of a job request" for k in unknown})
    task = body.get("task")
    if not isinstance(task, str) or task not in JOBS:
        raise inputs.invalid({"task": "must be one of: " + ", ".join(sorted(JOBS))}, "unknown task")
    kwargs = body.get("kwargs")
    if not isinstance(kwargs, dict):
        raise inputs.invalid({"kwargs": "must be an object: the task's keyword arguments"})
    job = JOBS[task]
    extra = sorted(k for k in kwargs if k not in job.arguments and k != REQUEST_ID)
    if extra:
        raise inputs.invalid(
            {f"kwargs.{k}": NOT_AN_ARGUMENT for k in extra},
            "unknown arguments: " + ", ".join(extra),
        )
    request_id = _request_id(body.get(REQUEST_ID), kwargs.get(REQUEST_ID))
    kwargs = {k: v for k, v in kwargs.items() if k != REQUEST_ID}
    if request_id is not None:
        kwargs[REQUEST_ID] = request_id
    if "org_id" in job.arguments:  # the org decides who may read the job
        inputs.org_id(kwargs.get("org_id"), "kwargs.org_id")
    return task, kwargs, request_id


def _request_id(top: Any, inner: Any) -> str | None:
    for field, value in (("request_id", top), ("kwargs.request_id", inner)):
        if value is not None and (
            not isinstance(value, str) or not 0 < len(value) <= REQUEST_ID_MAX
        ):
            raise inputs.invalid({field: f"must be a string of 1 to {REQUEST_ID_MAX} characters"})
    if top is not None and inner is not None and top != inner:
        raise inputs.invalid({"request_id": "differs from kwargs.request_id; give it once"})
    return top if top is not None else inner


def sealed_kwargs(deps: Deps, task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with their `credentials` sealed into `credentials_sealed`."""
    credentials = kwargs.get("credentials")
    if "credentials" not in JOBS[task].arguments or "credentials" not in kwargs:
        return kwargs
    rest = {k: v for k, v in kwargs.items() if k != "credentials"}
    if credentials is None:
        return rest
    if not isinstance(credentials, dict):
        raise inputs.invalid({"kwargs.credentials": "must be an object of credential fields"})
    if kwargs.get(sealed.FIELD) is not None:
        raise inputs.invalid(
            {"kwargs.credentials": BOTH, f"kwargs.{sealed.FIELD}": BOTH},
            "give the credentials only once",
        )
    closed = sealed.seal(deps.vault, credentials)
    if len(closed) > sealed.MAX_LENGTH:  # the worker would refuse it unopened
        raise inputs.invalid({"kwargs.credentials": "too large to be credentials"})
    return {**rest, sealed.FIELD: closed}


def intake(deps: Deps, body: Any) -> Intake:
    task, kwargs, request_id = parse(body)
    org = JOBS[task].org_id(kwargs)
    return Intake(task, sealed_kwargs(deps, task, kwargs), request_id, org or NO_ORG)


# -- job ids ------------------------------------------------------------------------------------


def id_key(token: str) -> bytes:
    """HKDF-SHA256 of the service token for this use alone (the token itself signs nothing)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        token.encode()
    )


def _mac(key: bytes, base: str, org: str) -> str:
    message = json.dumps(["v1", base, org]).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def new_job_id(key: bytes, org: str) -> str:
    base = str(uuid.uuid4())
    return f"{base}.{_mac(key, base, org)}"


def made_for(key: bytes, job_id: str, org: str) -> bool:
    """Whether the intake made `job_id` for `org`, or for no organization."""
    base, _, mac = job_id.partition(".")
    if not mac.isascii():  # compare_digest refuses other text; no MAC of ours is
        return False
    return any(hmac.compare_digest(mac, _mac(key, base, o)) for o in (org, NO_ORG))


# -- the org-scoped read ------------------------------------------------------------------------


def owner(row: Job) -> str | None:
    """The organization a job belongs to: the one it was sent for, else (accounts.check) its
    account's once it has run; None when neither is known."""
    if row.org_id is not None:
        return row.org_id
    account = (row.result or {}).get("account")
    found = account.get("org_id") if isinstance(account, dict) else None
    return found if isinstance(found, str) else None


def read(session: Session, key: bytes | None, org: str, job_id: str) -> tuple[int, dict[str, Any]]:
    """(200, the stored result), (202, queued or running), or `not_found`."""
    row = session.get(Job, job_id) if len(job_id) <= JOB_ID_MAX and "\x00" not in job_id else None
    made_here = key is not None and made_for(key, job_id, org)
    if row is None:
        if made_here:
            return 202, {"status": "queued"}
        raise Rejected(Reason.NOT_FOUND, NOT_FOUND)
    belongs = owner(row)
    if (belongs is None and not made_here) or (belongs is not None and belongs != org):
        raise Rejected(Reason.NOT_FOUND, NOT_FOUND)
    if row.result is None:
        return 202, {"status": "running"}
    return 200, row.result


# -- routes -------------------------------------------------------------------------------------


def routes(deps: Deps, settings: Settings, send_job: SendJob | None = None) -> list[Route]:
    token = settings.service_token.get_secret_value() if settings.service_token else None
    key = id_key(token) if token else None
    send = send_job or send_with_celery

    async def submit(request: Request) -> Response:
        if not _authorized(request, token) or key is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        raw = await _body(request, BODY_MAX)
        if raw is None:
            return _problem("too_large", f"the body must be at most {BODY_MAX} bytes", 413)
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            return _problem("invalid", "the body must be JSON: {task, kwargs, request_id?}", 400)
        try:
            job = intake(deps, body)
        except Rejected as exc:
            return _refusal(exc)
        job_id = new_job_id(key, job.org_id)
        try:
            await run_in_threadpool(send, JobOrder(job_id, job.task, job.kwargs))
        except Exception as exc:  # the broker is unreachable: nothing is queued
            log.error("job_not_queued", task=job.task, error=type(exc).__name__)
            message = "the job queue is unreachable, nothing was queued; send the job again"
            return _problem("unavailable", message, 503)
        log.info("job_queued", job_id=job_id, task=job.task, org_id=job.org_id or None)
        return JSONResponse({"job_id": job_id, "request_id": job.request_id}, status_code=202)

    async def status(request: Request) -> Response:
        if not _authorized(request, token):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        params = request.path_params
        try:
            require(parse_actor(_actor(request)), Action.LIST)
            org = inputs.org_id(params["org_id"])
            code, answer = await run_in_threadpool(_unit, deps, key, org, params["job_id"])
        except Rejected as exc:
            return _refusal(exc)
        return JSONResponse(answer, status_code=code)

    return [
        Route("/api/v1/jobs", submit, methods=["POST"]),
        Route("/api/v1/orgs/{org_id}/jobs/{job_id}", status, methods=["GET"]),
    ]


def _unit(deps: Deps, key: bytes | None, org: str, job_id: str) -> tuple[int, dict[str, Any]]:
    with deps.db.unit_of_work() as session:
        return read(session, key, org, job_id)


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, or None once it is over `limit` bytes (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(error: str, message: str, status_code: int) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status_code)


def _refusal(exc: Rejected) -> JSONResponse:
    payload = {"error": exc.reason.value, "message": exc.message, **exc.extra}
    return JSONResponse(payload, status_code=STATUS_FOR.get(exc.reason, 400))
