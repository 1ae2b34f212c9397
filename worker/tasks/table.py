"""The job table: each job's name, the service function it runs and the keyword arguments it takes.

The Celery tasks (made from this table in `worker.tasks.jobtask`), and the tests
all run a job through `run_as_job`, so a job's arguments are written once, here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from worker.service import accounts, checks, inputs, integrations
from worker.service.deps import Deps
from worker.service.jobs import Work, run_job
from worker.service.outcomes import Outcome, Reason, Rejected

# Every job takes it besides its own arguments; `run_job` answers a repeat from it.
REQUEST_ID = "request_id"


@dataclass(frozen=True)
class Job:
    """`service(session, deps, **arguments)`, or `service(session, **arguments)` without deps.

    An argument the sender leaves out reaches the service as None, for the service's own parsing
    to refuse as `invalid`; an argument the job does not take is refused before the service runs.
    """

    service: Callable[..., Outcome]
    arguments: tuple[str, ...]
    needs_deps: bool = True

    def org_id(self, kwargs: Mapping[str, Any]) -> Any:
        """The organization the job row records: only a job that takes `org_id` has one."""
        return kwargs.get("org_id") if "org_id" in self.arguments else None

    def work(
        self,
        deps: Deps,
        kwargs: Mapping[str, Any],
        positional: Sequence[Any] = (),
        *,
        plaintext_credentials: bool = True,
    ) -> Work:
        extra = {k: v for k, v in kwargs.items() if k not in self.arguments and k != REQUEST_ID}
        refused = unknown_arguments(extra, positional)
        if refused is None and not plaintext_credentials:
            refused = plaintext_refused(kwargs)
        if refused is not None:
            return refused
        values = {name: kwargs.get(name) for name in self.arguments}
        if self.needs_deps:
            return lambda session: self.service(session, deps, **values)
        return lambda session: self.service(session, **values)


def _check(session: Session, deps: Deps, *, account_id: Any) -> Outcome:
    # `check_now` takes a parsed id; the job takes whatever the sender sent.
    return checks.check_now(session, deps, inputs.account_id(account_id))


JOBS: dict[str, Job] = {
    "accounts.add": Job(
        accounts.add,
        ("org_id", "actor", "type", "name", "credentials", "settings", "credentials_sealed"),
    ),
    "accounts.update": Job(
        accounts.update,
        ("org_id", "actor", "account_id", "name", "settings", "credentials", "credentials_sealed"),
    ),
    "accounts.remove": Job(accounts.remove, ("org_id", "actor", "account_id")),
    "accounts.check": Job(_check, ("account_id",)),
    "integrations.link": Job(
        integrations.link, ("org_id", "integration_id", "account_id", "name"), needs_deps=False
    ),
    "integrations.unlink": Job(
        integrations.unlink, ("org_id", "integration_id", "account_id"), needs_deps=False
    ),
}

NOT_AN_ARGUMENT = "not an argument of this job"
POSITIONAL = "jobs take keyword arguments only: send_task(name, kwargs={...})"


def unknown_arguments(extra: Mapping[str, Any], positional: Sequence[Any] = ()) -> Work | None:
    """Work that refuses the job as `invalid`, naming each argument it does not take."""
    fields = {name: NOT_AN_ARGUMENT for name in extra}
    fields.update({f"args[{i}]": POSITIONAL for i in range(len(positional))})
    if not fields:
        return None

    def reject(_session: Any) -> Any:
        raise Rejected(
            Reason.INVALID, "unknown arguments: " + ", ".join(sorted(fields)), fields=fields
        )

    return reject


# JOB_CREDENTIALS: plaintext `credentials` on the broker sit in Redis (and its persistence) and
# show in Flower. Only the Celery task applies it (`run_as_job(plaintext_credentials=...)`): the
# CLI and the tests run jobs in-process, and the intake and connect sessions send them sealed.
PLAINTEXT_REFUSED = (
    "refused in plaintext over the broker (CONNECTIONS_JOB_CREDENTIALS=refuse): send the job "
    "through POST /api/v1/jobs, which seals them, or send them sealed as credentials_sealed"
)


def plaintext_refused(kwargs: Mapping[str, Any]) -> Work | None:
    """Work that refuses a job carrying plaintext `credentials` as `invalid`, never echoing them."""
    if kwargs.get("credentials") is None:
        return None

    def reject(_session: Any) -> Any:
        raise Rejected(
            Reason.INVALID,
            "credentials may not travel in the clear over the broker here; send them sealed",
            fields={"credentials": PLAINTEXT_REFUSED},
            step="validate",
        )

    return reject


def run_as_job(
    deps: Deps,
    name: str,
    kwargs: Mapping[str, Any],
    *,
    job_id: str | None = None,
    positional: Sequence[Any] = (),
    plaintext_credentials: bool = True,
) -> dict[str, Any]:
    """Run the job `name` as its task does (claimed by `job_id`, a repeated `request_id` answered
    from the first result) and return the stored result. `plaintext_credentials=False` (the Celery
    task, under JOB_CREDENTIALS=refuse) refuses a job that carries `credentials` in the clear."""
    job = JOBS[name]
    return run_job(
        deps.db,
        job_id=job_id or str(uuid.uuid4()),
        name=name,
        request_id=kwargs.get(REQUEST_ID),
        org_id=job.org_id(kwargs),
        work=job.work(deps, kwargs, positional, plaintext_credentials=plaintext_credentials),
    )
