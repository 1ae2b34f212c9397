"""What every job task shares: the stored, idempotent result, and retries of what is transient."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from sqlalchemy.exc import OperationalError

from worker.metrics import JOB_SECONDS, JOBS
from worker.runtime import get_deps
from worker.service.deps import Deps
from worker.service.jobs import JobInProgress, Work, run_job
from worker.service.outcomes import Reason, Rejected

log = structlog.get_logger(__name__)

JOB_RETRY = {
    "autoretry_for": (JobInProgress, OperationalError),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 20,
}


def unknown_arguments(extra: dict[str, Any]) -> Work | None:
    if not extra:
        return None
    fields = {name: "not an argument of this job" for name in extra}

    def reject(_session: Any) -> Any:
        raise Rejected(
            Reason.INVALID, "unknown arguments: " + ", ".join(sorted(fields)), fields=fields
        )

    return reject


def execute(
    task: Task, request_id: Any, org_id: Any, work: Work, extra: dict[str, Any]
) -> dict[str, Any]:
    """Run `work` as this task's job and return its stored result."""
    job_id = task.request.id or "local"
    structlog.contextvars.bind_contextvars(
        job_id=job_id, org_id=org_id if isinstance(org_id, str) else None
    )
    deps: Deps = get_deps()
    with JOB_SECONDS.labels(task.name).time():
        result = run_job(
            deps.db,
            job_id=job_id,
            name=task.name,
            request_id=request_id,
            org_id=org_id,
            work=unknown_arguments(extra) or work,
        )
    JOBS.labels(task.name, result["status"]).inc()
    log.info(
        "job_finished",
        status=result["status"],
        reason=result["reason"],
        account_id=(result.get("account") or {}).get("id"),
    )
    return result
