"""Running a job once: claim it, do its work and store its result in one transaction.

A repeated `request_id` answers with the first job's stored result and does nothing again; a
redelivered message (same job id, after a worker died) simply runs the unfinished job again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from models import Database, Job, utc_now
from worker.service import audit
from worker.service.outcomes import Outcome, Rejected

log = structlog.get_logger(__name__)

Work = Callable[[Session], Outcome]


class JobInProgress(Exception):
    """Another job with the same request_id is still running; ask again shortly."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} with the same request_id is still running")
        self.job_id = job_id


def run_job(
    db: Database,
    *,
    job_id: str,
    name: str,
    request_id: Any,
    org_id: Any,
    work: Work,
) -> dict[str, Any]:
    request = request_id if isinstance(request_id, str) and 0 < len(request_id) <= 200 else None
    earlier = _claim(db, job_id, name, request, org_id if isinstance(org_id, str) else None)
    if earlier is not None:
        return earlier
    try:
        with db.unit_of_work() as session:
            with audit.running_job(job_id, request):  # entries name this job
                outcome = work(session)
            result = _result(job_id, request, "succeeded", None, outcome.message, outcome.account)
            result.update(outcome.extra)
            _finish(session, job_id, result)
        return result
    except Rejected as exc:
        result = _result(job_id, request, exc.status, exc.reason.value, exc.message, None)
        result.update(exc.extra)
    except OperationalError:
        raise  # the database is unreachable: nothing can be stored; the task retries later
    except Exception as exc:
        # A bug or a broken dependency: answer and store `failed` rather than leave a job that
        # never ends; the traceback goes to the log, not to the caller.
        log.exception("job_crashed", job_id=job_id, job=name)
        message = f"internal error ({type(exc).__name__}); the job can be sent again"
        result = _result(job_id, request, "failed", None, message, None)
    with db.unit_of_work() as session:
        _finish(session, job_id, result)
    return result


def stored_result(session: Session, job_id: str) -> dict[str, Any] | None:
    job = session.get(Job, job_id)
    return job.result if job is not None else None


def _claim(
    db: Database, job_id: str, name: str, request_id: str | None, org_id: str | None
) -> dict[str, Any] | None:
    """Register the job; return an earlier result when there is nothing left to do."""
    with db.unit_of_work() as session:
        mine = session.get(Job, job_id)
        if mine is not None:
            return mine.result  # a redelivery: finished already, or resume (None)
        if request_id is not None:
            first = session.scalars(
                select(Job).where(Job.name == name, Job.request_id == request_id)
            ).first()
            if first is not None:
                return _answer_repeat(session, first, job_id, name, org_id)
        try:
            with session.begin_nested():
                session.add(Job(id=job_id, name=name, request_id=request_id, org_id=org_id))
        except IntegrityError:
            # The same request_id was claimed a moment ago by another worker.
            first = session.scalars(
                select(Job).where(Job.name == name, Job.request_id == request_id)
            ).one()
            return _answer_repeat(session, first, job_id, name, org_id)
    return None


def _answer_repeat(
    session: Session, first: Job, job_id: str, name: str, org_id: str | None
) -> dict[str, Any]:
    if first.result is None:
        raise JobInProgress(first.id)
    session.add(
        Job(
            id=job_id,
            name=name,
            org_id=org_id,
            status=first.status,
            result=first.result,
            duplicate_of=first.id,
            finished_at=utc_now(),
        )
    )
    log.info("job_repeat_answered", job_id=job_id, first_job_id=first.id)
    return first.result


def _finish(session: Session, job_id: str, result: dict[str, Any]) -> None:
    job = session.get(Job, job_id)
    assert job is not None, "claimed above"
    job.status = result["status"]
    job.result = result
    job.finished_at = utc_now()
    account = result.get("account")
    if isinstance(account, dict) and account.get("id"):
        job.account_id = uuid.UUID(account["id"])


def _result(
    job_id: str,
    request_id: str | None,
    status: str,
    reason: str | None,
    message: str,
    account: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "request_id": request_id,
        "status": status,
        "reason": reason,
        "message": message,
        "account": account,
    }
