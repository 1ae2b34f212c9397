"""The job intake's edge, without a database or a broker: what `POST /api/v1/jobs` refuses and
how, that credentials leave it sealed, the job ids it makes (bound to an organization), who may
read which job, and JOB_CREDENTIALS's effective default."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.fernet import Fernet

from models import Job
from worker.api import jobs
from worker.service import sealed
from worker.service.outcomes import Reason, Rejected
from worker.settings import Settings
from worker.tasks.table import JOBS, PLAINTEXT_REFUSED, plaintext_refused
from worker.vault import Vault

ADMIN = {"user_id": "u-1", "role": "admin"}
ACCOUNT = "3f0c2a8e-6b0e-4c57-9a1d-2b7e5f9c1d10"
KEY = jobs.id_key("a-service-token")


class FakeDeps:
    """What the intake uses of the process's dependencies: the vault."""

    def __init__(self) -> None:
        self.vault = Vault([Fernet.generate_key().decode()])


def fake_deps() -> Any:
    return FakeDeps()


def refused(body: Any) -> dict[str, str]:
    """The fields `intake` names when it refuses `body`."""
    with pytest.raises(Rejected) as caught:
        jobs.intake(fake_deps(), body)
    assert caught.value.reason is Reason.INVALID
    fields = caught.value.extra["fields"]
    assert isinstance(fields, dict)
    return fields


def link(**kwargs: Any) -> dict[str, Any]:
    base = {"org_id": "org-1", "integration_id": "wf-1", "account_id": ACCOUNT, "name": "Sync"}
    return {"task": "integrations.link", "kwargs": {**base, **kwargs}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "_"),
        ("accounts.add", "_"),
        ({"task": "accounts.add", "kwargs": {}, "colour": "blue"}, "colour"),
        ({"task": "accounts.nope", "kwargs": {}}, "task"),
        ({"task": 7, "kwargs": {}}, "task"),
        ({"kwargs": {}}, "task"),
        ({"task": "accounts.check"}, "kwargs"),
        ({"task": "accounts.check", "kwargs": [ACCOUNT]}, "kwargs"),
        ({"task": "accounts.check", "kwargs": {"account_id": ACCOUNT, "org": "x"}}, "kwargs.org"),
        ({**link(), "request_id": ""}, "request_id"),
        ({**link(), "request_id": "r" * 201}, "request_id"),
        ({**link(), "request_id": 12}, "request_id"),
        (link(request_id=["r-1"]), "kwargs.request_id"),
        ({**link(request_id="r-2"), "request_id": "r-1"}, "request_id"),
        (link(org_id="no spaces allowed"), "kwargs.org_id"),
        (link(org_id=None), "kwargs.org_id"),
    ],
)
def test_the_edge_refuses_what_it_can_tell_is_wrong(body: Any, field: str) -> None:
    assert field in refused(body)


def test_an_unknown_task_is_named_with_the_tasks_there_are() -> None:
    fields = refused({"task": "accounts.nope", "kwargs": {}})
    assert all(name in fields["task"] for name in JOBS)
    assert "accounts.nope" not in json.dumps(fields)


def test_credentials_must_be_an_object_and_given_once() -> None:
    add = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main"}
    as_text = {"task": "accounts.add", "kwargs": {**add, "credentials": "sk_test_123"}}
    assert "kwargs.credentials" in refused(as_text)
    both = {**add, "credentials": {"api_key": "sk_test_1"}, "credentials_sealed": "x"}
    assert set(refused({"task": "accounts.add", "kwargs": both})) == {
        "kwargs.credentials",
        "kwargs.credentials_sealed",
    }
    assert "sk_test_123" not in json.dumps(refused(as_text))
    huge = {**add, "credentials": {"api_key": "k" * 60_000}}
    assert "kwargs.credentials" in refused({"task": "accounts.add", "kwargs": huge})


def test_credentials_leave_the_edge_sealed_and_open_to_the_same() -> None:
    deps = fake_deps()
    credentials = {"api_key": "sk_test_0123456789abcdef"}
    kwargs = {"org_id": "org-1", "actor": ADMIN, "type": "stripe", "name": "Main"}
    body = {"task": "accounts.add", "kwargs": {**kwargs, "credentials": credentials}}
    job = jobs.intake(deps, body)
    assert "credentials" not in job.kwargs
    assert "sk_test_0123456789abcdef" not in json.dumps(job.kwargs)
    assert sealed.unseal(deps.vault, job.kwargs[sealed.FIELD]) == credentials
    assert {k: v for k, v in job.kwargs.items() if k != sealed.FIELD} == kwargs
    assert (job.task, job.org_id, job.request_id) == ("accounts.add", "org-1", None)


def test_null_credentials_are_left_out_and_sealed_ones_pass_as_they_are() -> None:
    deps = fake_deps()
    update = {"org_id": "org-1", "actor": ADMIN, "account_id": ACCOUNT, "name": "New"}
    job = jobs.intake(deps, {"task": "accounts.update", "kwargs": {**update, "credentials": None}})
    assert job.kwargs == update
    given = {**update, "credentials_sealed": "already-sealed"}
    job = jobs.intake(deps, {"task": "accounts.update", "kwargs": given})
    assert job.kwargs == given


def test_the_request_id_comes_at_the_top_or_in_the_kwargs_and_ends_in_the_kwargs() -> None:
    deps = fake_deps()
    top = jobs.intake(deps, {**link(), "request_id": "r-1"})
    inner = jobs.intake(deps, link(request_id="r-1"))
    both = jobs.intake(deps, {**link(request_id="r-1"), "request_id": "r-1"})
    for job in (top, inner, both):
        assert job.request_id == "r-1"
        assert job.kwargs["request_id"] == "r-1"
    assert "request_id" not in jobs.intake(deps, link()).kwargs


def test_a_job_without_an_organization_is_bound_to_none() -> None:
    job = jobs.intake(fake_deps(), {"task": "accounts.check", "kwargs": {"account_id": ACCOUNT}})
    assert job.org_id == jobs.NO_ORG


def test_job_ids_are_bound_to_their_organization() -> None:
    job_id = jobs.new_job_id(KEY, "org-1")
    assert len(job_id) <= 155
    assert jobs.made_for(KEY, job_id, "org-1")
    assert not jobs.made_for(KEY, job_id, "org-2")
    assert not jobs.made_for(jobs.id_key("another-token"), job_id, "org-1")
    base, _, mac = job_id.partition(".")
    other_base = jobs.new_job_id(KEY, "org-1").partition(".")[0]
    assert not jobs.made_for(KEY, f"{other_base}.{mac}", "org-1")
    assert not jobs.made_for(KEY, base, "org-1")
    assert not jobs.made_for(KEY, f"{base}.\u00e9{mac[1:]}", "org-1")
    anyone = jobs.new_job_id(KEY, jobs.NO_ORG)
    assert jobs.made_for(KEY, anyone, "org-1")
    assert jobs.made_for(KEY, anyone, "org-2")


class Rows:
    """A session that knows some job rows."""

    def __init__(self, *rows: Job) -> None:
        self.rows = {row.id: row for row in rows}

    def get(self, _model: Any, key: str) -> Job | None:
        return self.rows.get(key)


def answer(session: Rows, org: str, job_id: str) -> tuple[int, dict[str, Any]] | str:
    try:
        return jobs.read(session, KEY, org, job_id)
    except Rejected as exc:
        return exc.reason.value


def result(org: str | None) -> dict[str, Any]:
    account = {"id": ACCOUNT, "org_id": org} if org else None
    return {"status": "succeeded", "account": account}


def test_who_reads_which_job() -> None:
    queued = jobs.new_job_id(KEY, "org-1")
    running = Job(id=jobs.new_job_id(KEY, "org-1"), name="accounts.add", org_id="org-1")
    done = Job(id="sent-over-celery", name="accounts.add", org_id="org-1", result=result("org-1"))
    check = Job(id="check-1", name="accounts.check", org_id=None, result=result("org-1"))
    no_org_running = Job(id=jobs.new_job_id(KEY, jobs.NO_ORG), name="accounts.check")
    orphan = Job(id="check-2", name="accounts.check", result=result(None))
    session = Rows(running, done, check, no_org_running, orphan)

    assert answer(session, "org-1", queued) == (202, {"status": "queued"})
    assert answer(session, "org-2", queued) == "not_found"
    assert answer(session, "org-1", running.id) == (202, {"status": "running"})
    assert answer(session, "org-2", running.id) == "not_found"
    assert answer(session, "org-1", done.id) == (200, done.result)
    assert answer(session, "org-2", done.id) == "not_found"
    assert answer(session, "org-1", check.id) == (200, check.result)
    assert answer(session, "org-2", check.id) == "not_found"
    assert answer(session, "org-2", no_org_running.id) == (202, {"status": "running"})
    assert answer(session, "org-1", orphan.id) == "not_found"  # not made here, of no org
    assert answer(session, "org-1", "unknown") == "not_found"
    assert answer(session, "org-1", "x" * 200) == "not_found"
    assert answer(session, "org-1", "job\x00") == "not_found"


@pytest.mark.parametrize(
    ("database_url", "setting", "accepts"),
    [
        ("sqlite:///var/connections.db", None, True),
        ("postgresql://db/connections", None, False),
        ("sqlite:///var/connections.db", "refuse", False),
        ("postgresql://db/connections", "accept", True),
    ],
)
def test_job_credentials_is_accept_in_dev_and_refuse_otherwise(
    database_url: str, setting: Any, accepts: bool
) -> None:
    settings = Settings(database_url=database_url, job_credentials=setting)
    assert settings.accepts_plaintext_job_credentials is accepts


def test_job_credentials_takes_only_accept_or_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_JOB_CREDENTIALS", "refuse")
    assert Settings().job_credentials == "refuse"
    monkeypatch.setenv("CONNECTIONS_JOB_CREDENTIALS", "sometimes")
    with pytest.raises(ValueError, match="job_credentials"):
        Settings()


def test_plaintext_refused_says_how_to_send_credentials_and_never_echoes_them() -> None:
    assert plaintext_refused({"credentials_sealed": "x"}) is None
    assert plaintext_refused({"credentials": None}) is None
    work = plaintext_refused({"credentials": {"api_key": "sk_test_secret0000"}})
    assert work is not None
    with pytest.raises(Rejected) as caught:
        work(None)
    assert caught.value.reason is Reason.INVALID
    assert caught.value.extra["fields"] == {"credentials": PLAINTEXT_REFUSED}
    assert "POST /api/v1/jobs" in PLAINTEXT_REFUSED
    assert "credentials_sealed" in PLAINTEXT_REFUSED
    assert "sk_test_secret0000" not in json.dumps([caught.value.message, caught.value.extra])
