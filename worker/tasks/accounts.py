"""Account jobs other services queue: `accounts.add`, `.update`, `.remove`, `.check`."""

from __future__ import annotations

from typing import Any

from celery import Task

from worker.celery_app import app
from worker.runtime import get_deps
from worker.service import accounts, checks, inputs
from worker.tasks.jobtask import JOB_RETRY, execute


@app.task(name="accounts.add", bind=True, **JOB_RETRY)
def add(
    self: Task,
    org_id: Any = None,
    actor: Any = None,
    type: Any = None,
    name: Any = None,
    credentials: Any = None,
    settings: Any = None,
    request_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        org_id,
        lambda session: accounts.add(
            session,
            get_deps(),
            org_id=org_id,
            actor=actor,
            type=type,
            name=name,
            credentials=credentials,
            settings=settings,
        ),
        extra,
    )


@app.task(name="accounts.update", bind=True, **JOB_RETRY)
def update(
    self: Task,
    org_id: Any = None,
    actor: Any = None,
    account_id: Any = None,
    name: Any = None,
    settings: Any = None,
    credentials: Any = None,
    request_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        org_id,
        lambda session: accounts.update(
            session,
            get_deps(),
            org_id=org_id,
            actor=actor,
            account_id=account_id,
            name=name,
            settings=settings,
            credentials=credentials,
        ),
        extra,
    )


@app.task(name="accounts.remove", bind=True, **JOB_RETRY)
def remove(
    self: Task,
    org_id: Any = None,
    actor: Any = None,
    account_id: Any = None,
    request_id: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        org_id,
        lambda session: accounts.remove(
            session, get_deps(), org_id=org_id, actor=actor, account_id=account_id
        ),
        extra,
    )


@app.task(name="accounts.check", bind=True, **JOB_RETRY)
def check(
    self: Task, account_id: Any = None, request_id: Any = None, **extra: Any
) -> dict[str, Any]:
    return execute(
        self,
        request_id,
        None,
        lambda session: checks.check_now(session, get_deps(), inputs.account_id(account_id)),
        extra,
    )
