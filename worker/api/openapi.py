"""`GET /openapi.json`: the ingest's OpenAPI document (webhooks, health, the read API, connect
sessions, the job intake), written by hand from the contract's shapes (`worker.api.shapes`). The
webhook paths come from the provider registry, like the routes themselves; tests hold the document
to the routes."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.registry import PROVIDERS
from worker.api.jobs import BODY_MAX
from worker.api.readapi import JOB_ID_MAX
from worker.api.shapes import SHAPES
from worker.api.webhooks import PREFIX
from worker.service.inputs import ORG_ID
from worker.service.outcomes import Role

VERSION = "1"
REF = "#/components/schemas/{model}"


def _json(description: str, shape: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": REF.format(model=shape)} if shape else {}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _param(where: str, name: str, description: str, **schema: Any) -> dict[str, Any]:
    param = {"name": name, "in": where, "required": True, "description": description}
    return {**param, "schema": {"type": "string", **schema}}


ORG = _param("path", "org_id", "The organization", pattern=ORG_ID.pattern)
ACTOR = [
    _param("header", "X-Actor-Id", "The user the read is made for"),
    _param("header", "X-Actor-Role", "That user's role", enum=[r.value for r in Role]),
]
SERVICE_TOKEN = {"type": "http", "scheme": "bearer", "description": "CONNECTIONS_SERVICE_TOKEN"}
API_ERRORS = {
    "400": _json("Missing actor headers, an unknown role or bad input (`fields`)", "Problem"),
    "401": _json("No valid service token", "Unauthorized"),
}


def _api(
    summary: str,
    params: list[dict[str, Any]],
    ok: dict[str, dict[str, Any]],
    more: dict[str, Any] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    """One read API operation: the service token, the actor headers; a GET unless it has a body."""
    operation = {
        "tags": ["read API"],
        "summary": summary,
        "security": [{"serviceToken": []}],
        "parameters": [*params, *ACTOR],
        "responses": {**ok, **API_ERRORS, **(more or {})},
    }
    if body is None:
        return {"get": operation}
    content = {"application/json": {"schema": {"$ref": REF.format(model=body)}}}
    return {"post": {**operation, "requestBody": {"required": True, "content": content}}}


def _webhook(title: str, batches: bool, per_account: bool) -> dict[str, Any]:
    accepted = "WebhookBatchAccepted" if batches else "WebhookAccepted"
    responses = {
        "200": _json("Stored durably (or seen before)", accepted),
        "400": _json("Malformed after a good signature", "Problem"),
        "401": _json("Missing or wrong signature, or no secret configured", "Problem"),
        "413": _json("The body is over 1 MiB", "Problem"),
        "503": _json("The event store is unavailable: the provider retries", "Problem"),
    }
    if per_account:
        responses["404"] = _json("No such account of this provider", "Problem")
    summary = f"{title} webhook, verified with the account's own secret" if per_account else None
    operation: dict[str, Any] = {
        "tags": ["webhooks"],
        "summary": summary or f"{title} webhook",
        "description": "Verified on the raw body with the provider's signature headers, stored "
        "in the inbox, answered once stored; processed later (docs/providers.md).",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
        "responses": responses,
    }
    if per_account:
        operation["parameters"] = [_param("path", "account_id", "The account", format="uuid")]
    return {"post": operation}


def webhook_paths() -> dict[str, Any]:
    """`POST /webhooks/<type>` per provider that sends webhooks, and the per-account route of
    those with their own secret, as `worker.api.webhooks.Webhooks` serves them."""
    paths: dict[str, Any] = {}
    for type_, spec in PROVIDERS.items():
        if spec.webhooks is None:
            continue
        paths[f"{PREFIX}{type_}"] = _webhook(spec.title, spec.batches, False)
        if spec.account_secret_field is not None:
            paths[f"{PREFIX}{type_}/{{account_id}}"] = _webhook(spec.title, spec.batches, True)
    return paths


def _plain(tag: str, summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"get": {"tags": [tag], "summary": summary, "responses": responses, **more}}


def connect_paths() -> dict[str, Any]:
    """Connect sessions (`worker.api.connect`): made and read by the front end, ended by the
    provider sending the browser back to the callback."""
    session = _param("path", "session_id", "The connect session", format="uuid")
    not_found = {"404": _json("No such session (or account) in this organization", "Problem")}
    page = {"text/html": {"schema": {"type": "string"}}}
    callback = {
        "200": {"description": "A page saying how it ended (no return URL)", "content": page},
        "303": {"description": "Back to the session's return URL, with `session` and `status`"},
        "400": {"description": "A state that is forged, expired or used", "content": page},
        "404": {"description": "No such provider", "content": page},
    }
    query = [
        {**_param("query", name, why), "required": False}
        for name, why in (
            ("state", "The session's signed state"),
            ("code", "The provider's authorization code"),
            ("error", "The provider's refusal"),
        )
    ]
    forbidden = {"403": _json("A reader may not connect accounts", "Problem")}
    return {
        "/api/v1/orgs/{org_id}/connect-sessions": _api(
            "Start connecting (or reconnecting) an account (admin, collaborator)",
            [ORG],
            {"201": _json("The session and where to send the browser", "ConnectSessionCreated")},
            {**forbidden, **not_found},
            body="ConnectSessionRequest",
        ),
        "/api/v1/orgs/{org_id}/connect-sessions/{session_id}": _api(
            "How a connect session ended (any role)",
            [ORG, session],
            {"200": _json("The session", "ConnectSessionView")},
            not_found,
        ),
        "/connect/{type}/callback": _plain(
            "connect",
            "Where the provider sends the browser back after authorizing",
            callback,
            parameters=[_param("path", "type", "The provider", enum=sorted(PROVIDERS)), *query],
        ),
    }


def job_paths() -> dict[str, Any]:
    """The job intake (`worker.api.jobs`): a job queued over HTTP, and read as an organization's."""
    job = _param("path", "job_id", "The id the intake answered", minLength=1, maxLength=JOB_ID_MAX)
    body = {"application/json": {"schema": {"$ref": REF.format(model="JobRequest")}}}
    bad = (
        "Not JSON; an unknown task; kwargs that are not an object or name an argument the task "
        "does not take; a malformed request_id or org_id; credentials that are not an object "
        "(`fields`)"
    )
    submit = {
        "tags": ["job intake"],
        "summary": "Queue a job for the worker (credentials are sealed before it is queued)",
        "description": "For services that do not speak Celery, and for every job that carries "
        "credentials. The actor travels in the kwargs, as over Celery (docs/jobs.md).",
        "security": [{"serviceToken": []}],
        "requestBody": {"required": True, "content": body},
        "responses": {
            "202": _json("Queued", "JobQueued"),
            "400": _json(bad, "Problem"),
            "401": _json("No valid service token", "Unauthorized"),
            "413": _json(f"The body is over {BODY_MAX} bytes", "Problem"),
            "503": _json("The broker is unreachable: nothing was queued", "Problem"),
        },
    }
    return {
        "/api/v1/jobs": {"post": submit},
        "/api/v1/orgs/{org_id}/jobs/{job_id}": _api(
            "A job as the organization reads it (any role)",
            [ORG, job],
            {
                "200": _json("The result the job returned", "JobResult"),
                "202": _json("No result yet: queued or running", "JobPending"),
            },
            {"404": _json("No such job in this organization (or an unknown id)", "Problem")},
        ),
    }


@cache
def document() -> dict[str, Any]:
    """The whole document; the registry is fixed for the life of the process."""
    _, schemas = models_json_schema([(m, "serialization") for m in SHAPES], ref_template=REF)
    account = _param("path", "account_id", "The account", format="uuid")
    job = _param("path", "job_id", "The job id `send_task` gave", minLength=1, maxLength=JOB_ID_MAX)
    paths = {
        **webhook_paths(),
        "/healthz": _plain("health", "The process lives", {"200": _json("Alive", "Health")}),
        "/readyz": _plain(
            "health",
            "Every dependency answers: the database, the broker, Redis's memory",
            {"200": _json("Ready", "Readiness"), "503": _json("Not ready", "Readiness")},
        ),
        "/metrics": _plain(
            "health",
            "Prometheus metrics",
            {"200": {"description": "Exposition format", "content": {"text/plain": {}}}},
        ),
        "/openapi.json": _plain("health", "This document", {"200": _json("OpenAPI 3.1")}),
        "/api/v1/orgs/{org_id}/accounts": _api(
            "The organization's accounts (any role)",
            [ORG],
            {"200": _json("The accounts", "Accounts")},
        ),
        "/api/v1/orgs/{org_id}/accounts/{account_id}": _api(
            "One account's details (admin, collaborator)",
            [ORG, account],
            {"200": _json("The details", "AccountDetails")},
            {
                "403": _json("A reader may not open details", "Problem"),
                "404": _json("No such account in this organization", "Problem"),
            },
        ),
        "/api/v1/jobs/{job_id}": _api(
            "A finished job's stored result",
            [job],
            {"200": _json("The result the job returned", "JobResult")},
            {"404": _json("No finished job with this id", "Problem")},
        ),
        "/api/v1/orgs/{org_id}/audit": _api(
            "The organization's audit trail, newest first (admin, collaborator)",
            [
                ORG,
                {
                    **_param("query", "account_id", "Only this account's", format="uuid"),
                    "required": False,
                },
            ],
            {"200": _json("The entries", "AuditEntries")},
            {"403": _json("A reader may not read the audit trail", "Problem")},
        ),
        **connect_paths(),
        **job_paths(),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Standout connections: the ingest",
            "version": VERSION,
            "description": "Provider webhooks, health, metrics, the internal read API, "
            "connect sessions and the job intake (shared/CONTRACT.md). Times are ISO 8601 with a "
            "UTC offset.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {"serviceToken": SERVICE_TOKEN},
        },
    }


async def _serve(_: Request) -> JSONResponse:
    return JSONResponse(document())


def route() -> Route:
    return Route("/openapi.json", _serve, methods=["GET"])
