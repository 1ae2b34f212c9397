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


def _run(deps: Deps, name: str, request_id: str | None, args: dict[str, Any], work: Any) -> Any:
    return run_job(
        deps.db,
        job_id=str(uuid.uuid4()),
        name=name,
        request_id=request_id,
        org_id=args["org_id"],
        work=lambda s: work(s, **args),
    )


def add(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main", **kwargs}
    return _run(deps, "accounts.add", request_id, args, lambda s, **a: accounts.add(s, deps, **a))


def update(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return _run(
        deps, "accounts.update", request_id, args, lambda s, **a: accounts.update(s, deps, **a)
    )


def remove(deps: Deps, request_id: str | None = None, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return _run(
        deps, "accounts.remove", request_id, args, lambda s, **a: accounts.remove(s, deps, **a)
    )


def link(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "name": "Invoice sync", **kwargs}
    return _run(deps, "integrations.link", None, args, integrations.link)


def unlink(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", **kwargs}
    return _run(deps, "integrations.unlink", None, args, integrations.unlink)


def counts(deps: Deps) -> dict[str, int]:
    """Rows that an effect would write; a refused job must leave these unchanged."""
    with deps.db.unit_of_work() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Account, IntegrationRef, StatusChange, OutboxEvent)
        }
