"""The contract's JSON shapes (shared/CONTRACT.md, "JSON shapes" and the routes' answers) as
pydantic models, from which the OpenAPI document (`worker.api.openapi`) takes its schemas."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from connectors.registry import PROVIDERS
from models import AccountStatus, ConnectStatus
from worker.service.outcomes import Role
from worker.tasks.table import JOBS

ACCOUNT_TYPES: list[JsonValue] = [*sorted(PROVIDERS)]
JOB_NAMES: list[JsonValue] = [*sorted(JOBS)]


class AccountSummary(BaseModel):
    """An account as lists and job results show it."""

    id: uuid.UUID
    org_id: str
    name: str
    type: str = Field(json_schema_extra={"enum": ACCOUNT_TYPES})
    status: AccountStatus
    created_at: datetime
    updated_at: datetime


class Accounts(BaseModel):
    accounts: list[AccountSummary]


class Integration(BaseModel):
    id: str
    name: str


class AccountErrorView(BaseModel):
    """One problem of an account; open ones first, then recently resolved."""

    id: uuid.UUID
    code: str
    message: str
    source: str
    first_occurred_at: datetime
    last_occurred_at: datetime
    occurrences: int
    resolved_at: datetime | None


class Actor(BaseModel):
    user_id: str
    role: Role


class StatusChangeView(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: AccountStatus | None = Field(alias="from")
    to: AccountStatus
    reason: str
    source: str
    actor: Actor | None
    occurred_at: datetime


class AccountDetails(AccountSummary):
    """The summary with what only admins and collaborators see; no credential, at most its last
    four characters in `connection`."""

    connection: dict[str, Any]
    metadata: dict[str, Any]
    settings: dict[str, Any]
    last_checked_at: datetime | None
    integrations: list[Integration]
    errors: list[AccountErrorView]
    status_history: list[StatusChangeView]


class JobResult(BaseModel):
    """What a job returned and stored; some jobs add fields (`step`, `integrations`, `revoked`)."""

    model_config = ConfigDict(extra="allow")

    job_id: str
    request_id: str | None
    status: Literal["succeeded", "rejected", "failed"]
    reason: str | None
    message: str
    account: AccountSummary | None


class Problem(BaseModel):
    """A refused request; `invalid` names the fields at fault in `fields`."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class Unauthorized(BaseModel):
    error: Literal["unauthorized"]


class WebhookAccepted(BaseModel):
    status: Literal["accepted", "duplicate"]
    event_id: uuid.UUID


class WebhookBatchAccepted(BaseModel):
    """One request of many events: `duplicate` only when every one was seen before."""

    status: Literal["accepted", "duplicate"]
    event_ids: list[uuid.UUID]
    accepted: int
    duplicates: int


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """`status` and each dependency's state: `ok` or `unavailable: <why>`."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str] = Field(init=False)

    status: Literal["ready", "not_ready"]


class ConnectSessionRequest(BaseModel):
    """A new connect session; `account_id` reconnects that account, `shop_domain` is Shopify's,
    `return_url` must start with one of CONNECT_RETURN_URLS."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(json_schema_extra={"enum": ACCOUNT_TYPES})
    name: str | None = None
    account_id: uuid.UUID | None = None
    shop_domain: str | None = None
    return_url: str | None = None


class ConnectSessionCreated(BaseModel):
    id: uuid.UUID
    authorize_url: str
    expires_at: datetime


class ConnectSessionView(BaseModel):
    """How a connect session ended, or that it has not yet."""

    id: uuid.UUID
    type: str
    status: ConnectStatus
    reason: str | None
    message: str | None
    job_id: str | None
    account: AccountSummary | None


class JobRequest(BaseModel):
    """A job for the worker: `kwargs` are the task's keyword arguments, as over Celery
    (docs/jobs.md, docs/schemas/<task>.kwargs.json); `credentials` among them are sealed into
    `credentials_sealed` before the job is queued. `request_id` may come here or in `kwargs`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(json_schema_extra={"enum": JOB_NAMES})
    kwargs: dict[str, Any]
    request_id: str | None = Field(default=None, min_length=1, max_length=200)


class JobQueued(BaseModel):
    """The job is on the queue; read it with `GET /api/v1/orgs/{org_id}/jobs/{job_id}`."""

    job_id: str
    request_id: str | None


class JobPending(BaseModel):
    """No result yet: `queued` (no worker has taken the job) or `running`."""

    status: Literal["queued", "running"]


class AuditEntryView(BaseModel):
    """One change and what caused it; `account_id` outlives the account, `details` hold no
    secret, `outcome` is a word or, for a revocation, true, false or null."""

    id: uuid.UUID
    occurred_at: datetime
    action: str
    actor: Actor | None
    cause: Literal["job", "check", "event", "refresh", "operator"]
    account_id: uuid.UUID | None
    job_id: str | None
    request_id: str | None
    outcome: JsonValue
    details: dict[str, Any]


class AuditEntries(BaseModel):
    """Newest first."""

    entries: list[AuditEntryView]


SHAPES: tuple[type[BaseModel], ...] = (
    *(AccountSummary, Accounts, AccountDetails, JobResult, Problem, Unauthorized),
    *(WebhookAccepted, WebhookBatchAccepted, Health, Readiness),
    *(ConnectSessionRequest, ConnectSessionCreated, ConnectSessionView),
    *(JobRequest, JobQueued, JobPending),
    *(AuditEntries,),
)
