"""The job table and the tasks made from it: arguments a job does not know are refused as
`invalid`, naming each one; the ones it takes reach its service function, None when left out."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from worker.celery_app import app
from worker.service.outcomes import Outcome, Reason, Rejected
from worker.tasks.jobtask import JOB_RETRY, TASKS
from worker.tasks.table import JOBS, Job, unknown_arguments


def test_unknown_arguments_are_named() -> None:
    work = unknown_arguments({"colour": "blue", "size": 3})
    assert work is not None
    with pytest.raises(Rejected) as caught:
        work(None)
    assert caught.value.reason is Reason.INVALID
    assert caught.value.extra["fields"] == {
        "colour": "not an argument of this job",
        "size": "not an argument of this job",
    }


def test_no_unknown_arguments_means_no_override() -> None:
    assert unknown_arguments({}) is None


def test_positional_arguments_are_refused() -> None:
    work = unknown_arguments({}, ("org-1",))
    assert work is not None
    with pytest.raises(Rejected) as caught:
        work(None)
    assert caught.value.reason is Reason.INVALID
    assert list(caught.value.extra["fields"]) == ["args[0]"]


@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_table_names_exactly_the_service_arguments(name: str) -> None:
    job = JOBS[name]
    parameters = inspect.signature(job.service).parameters.values()
    keywords = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    leading = [p.name for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert sorted(job.arguments) == sorted(keywords)
    assert leading == (["session", "deps"] if job.needs_deps else ["session"])


@pytest.mark.parametrize("name", sorted(JOBS))
def test_each_job_is_a_registered_task_that_retries_what_is_transient(name: str) -> None:
    task = app.tasks[name]
    assert TASKS[name].name == name
    assert task.autoretry_for == JOB_RETRY["autoretry_for"]
    assert task.max_retries == JOB_RETRY["max_retries"]


NO_DEPS: Any = object()


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def with_deps(self, session: Any, deps: Any, *, a: Any, b: Any = "default") -> Outcome:
        self.calls.append((session, deps, a, b))
        return Outcome("done")

    def without_deps(self, session: Any, *, a: Any, b: Any = "default") -> Outcome:
        self.calls.append((session, a, b))
        return Outcome("done")


def test_arguments_left_out_reach_the_service_as_none() -> None:
    service = Recorder()
    deps: Any = object()
    job = Job(service.with_deps, ("a", "b"))
    assert job.work(deps, {"a": 1, "request_id": "r-1"})("session").message == "done"
    assert service.calls == [("session", deps, 1, None)]


def test_a_job_without_deps_gets_none() -> None:
    service = Recorder()
    job = Job(service.without_deps, ("a", "b"), needs_deps=False)
    job.work(NO_DEPS, {"b": 2})("session")
    assert service.calls == [("session", None, 2)]


def test_unknown_arguments_never_reach_the_service() -> None:
    service = Recorder()
    job = Job(service.with_deps, ("a", "b"))
    with pytest.raises(Rejected) as caught:
        job.work(NO_DEPS, {"a": 1, "colour": "blue"})("session")
    assert caught.value.message == "unknown arguments: colour"
    with pytest.raises(Rejected):
        job.work(NO_DEPS, {"a": 1}, ("positional",))("session")
    assert service.calls == []


def test_only_a_job_that_takes_org_id_records_one() -> None:
    assert JOBS["accounts.add"].org_id({"org_id": "org-1"}) == "org-1"
    assert JOBS["accounts.check"].org_id({"org_id": "org-1", "account_id": "x"}) is None
