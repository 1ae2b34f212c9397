"""Jobs run the way their Celery tasks run them (`run_as_job`), with the tests' usual defaults."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from models import Account, IntegrationRef, OutboxEvent, StatusChange
from worker.service.deps import Deps
from worker.tasks.table import run_as_job

ADMIN = {"user_id": "u-admin", "role": "admin"}
COLLABORATOR = {"user_id": "u-collab", "role": "collaborator"}
READER = {"user_id": "u-reader", "role": "reader"}


def add(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main", **kwargs}
    return run_as_job(deps, "accounts.add", args)


def update(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return run_as_job(deps, "accounts.update", args)


def remove(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    args = {"org_id": "org-1", "actor": ADMIN, **kwargs}
    return run_as_job(deps, "accounts.remove", args)


def link(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    return run_as_job(
        deps, "integrations.link", {"org_id": "org-1", "name": "Invoice sync", **kwargs}
    )


def unlink(deps: Deps, **kwargs: Any) -> dict[str, Any]:
    return run_as_job(deps, "integrations.unlink", {"org_id": "org-1", **kwargs})


def counts(deps: Deps) -> dict[str, int]:
    """Rows that an effect would write; a refused job must leave these unchanged."""
    with deps.db.unit_of_work() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model)) or 0
            for model in (Account, IntegrationRef, StatusChange, OutboxEvent)
        }
