"""Run service calls as jobs, the way the Celery tasks do, for integration tests."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from models import Account, IntegrationRef, OutboxEvent, StatusChange
from worker.service import accounts, integrations
from worker.service.deps import Deps
from worker.service.jobs import run_job

ADMIN = {"user_id": "u-admin", "role": "admin"}
COLLABORATOR = {"user_id": "u-collab", "role": "collaborator"}
READER = {"user_id": "u-reader", "role": "reader"}


def add(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main", **kwargs}
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="accounts.add",
        request_id=request_id,
        org_id=args["org_id"],
        work=lambda s: accounts.add(s, deps, **args),
    )


def update(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="accounts.update",
        request_id=request_id,
        org_id=args["org_id"],
        work=lambda s: accounts.update(s, deps, **args),
    )


def remove(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="accounts.remove",
        request_id=request_id,
        org_id=args["org_id"],
        work=lambda s: accounts.remove(s, deps, **args),
    )


def link(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "name": "Invoice sync", **kwargs}
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="integrations.link",
        request_id=None,
        org_id=args["org_id"],
        work=lambda s: integrations.link(s, **args),
    )


def unlink(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", **kwargs}
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name="integrations.unlink",
        request_id=None,
        org_id=args["org_id"],
        work=lambda s: integrations.unlink(s, **args),
    )


def counts(deps: Deps) -> dict[str, int]:
    """Rows that an effect would write; a refused job must leave these unchanged."""
    with deps.db.unit_of_work() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Account, IntegrationRef, StatusChange, OutboxEvent)
        }
