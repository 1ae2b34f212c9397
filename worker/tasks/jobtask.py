"""The job tasks, one per row of the job table: each runs its job with a stored, idempotent
result, retries what is transient, and counts and logs how it ended."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from sqlalchemy.exc import OperationalError

from worker import metrics
from worker.celery_app import app
from worker.runtime import get_deps
from worker.service.jobs import JobInProgress
from worker.settings import get_settings
from worker.tasks.table import JOBS, run_as_job

log = structlog.get_logger(__name__)

JOB_RETRY = {
    "autoretry_for": (JobInProgress, OperationalError),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


def execute(task: Task, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run this task's job with its Celery task id as the job id; return its stored result."""
    job_id = task.request.id or "local"
    org_id = JOBS[task.name].org_id(kwargs)
    structlog.contextvars.bind_contextvars(
        job_id=job_id, org_id=org_id if isinstance(org_id, str) else None
    )
    with metrics.JOB_SECONDS.labels(task.name).time():
        result = run_as_job(
            get_deps(),
            task.name,
            kwargs,
            job_id=job_id,
            positional=args,
            # A delivery over the broker: JOB_CREDENTIALS decides about plaintext credentials.
            plaintext_credentials=get_settings().accepts_plaintext_job_credentials,
        )
    metrics.JOBS.labels(task.name, result["status"]).inc()
    log.info(
        "job_finished",
        status=result["status"],
        reason=result["reason"],
        account_id=(result.get("account") or {}).get("id"),
    )
    return result


def job_task(name: str) -> Task:
    """Register the thin Celery task of the job `name`."""

    @app.task(name=name, bind=True, **JOB_RETRY)
    def run(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return execute(self, args, kwargs)

    return run


TASKS: dict[str, Task] = {name: job_task(name) for name in JOBS}
