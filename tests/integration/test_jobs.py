"""Jobs always end with a stored result, and a redelivered job finishes what it started."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from models import Database, Job
from worker.service.jobs import JobInProgress, run_job, stored_result
from worker.service.outcomes import Outcome


def test_a_crash_is_stored_as_failed_without_the_details(db: Database) -> None:
    def crash(_: Session) -> Outcome:
        raise KeyError("sk_test_secretinside")

    result = run_job(
        db, job_id="j-crash", name="accounts.add", request_id="r", org_id="o", work=crash
    )
    assert result["status"] == "failed"
    assert result["reason"] is None
    assert "KeyError" in result["message"]
    assert "sk_test" not in str(result)
    with db.unit_of_work() as s:
        assert stored_result(s, "j-crash") == result


def test_database_outage_propagates_for_celery_to_retry(db: Database) -> None:
    def outage(_: Session) -> Outcome:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with pytest.raises(OperationalError):
        run_job(db, job_id="j-down", name="accounts.add", request_id=None, org_id="o", work=outage)
    with db.unit_of_work() as s:
        job = s.get(Job, "j-down")
        assert job is not None
        assert job.result is None  # still claimed: the retry (same task id) resumes it


def test_redelivery_of_a_finished_job_does_not_run_it_again(db: Database) -> None:
    runs: list[int] = []

    def work(_: Session) -> Outcome:
        runs.append(1)
        return Outcome("done")

    first = run_job(
        db, job_id="j-1", name="accounts.check", request_id=None, org_id=None, work=work
    )
    again = run_job(
        db, job_id="j-1", name="accounts.check", request_id=None, org_id=None, work=work
    )
    assert first == again
    assert runs == [1]


def test_a_running_duplicate_asks_to_retry(db: Database) -> None:
    with db.unit_of_work() as s:
        s.add(Job(id="j-running", name="accounts.add", request_id="same"))
    with pytest.raises(JobInProgress):
        run_job(
            db,
            job_id="j-2",
            name="accounts.add",
            request_id="same",
            org_id="o",
            work=lambda _: Outcome("never"),
        )
    with db.unit_of_work() as s:
        assert s.scalars(select(Job).where(Job.id == "j-2")).first() is None
