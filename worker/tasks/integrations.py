"""Integration jobs: `integrations.link` and `integrations.unlink`."""

from __future__ import annotations

from typing import Any

from celery import Task

from worker.celery_app import app
from worker.service import integrations
from worker.tasks.jobtask import JOB_RETRY, execute


@app.task(name="integrations.link", bind=True, **JOB_RETRY)
def link(
    self: Task,
    org_id: Any = None,
    integration_id: Any = None,
    account_id: Any = None,
    name: Any = None,
    request_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        org_id,
        lambda session: integrations.link(
            session, org_id=org_id, integration_id=integration_id, account_id=account_id, name=name
        ),
        extra,
    )


@app.task(name="integrations.unlink", bind=True, **JOB_RETRY)
def unlink(
    self: Task,
    org_id: Any = None,
    integration_id: Any = None,
    account_id: Any = None,
    request_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        org_id,
        lambda session: integrations.unlink(
            session, org_id=org_id, integration_id=integration_id, account_id=account_id
        ),
        extra,
    )
