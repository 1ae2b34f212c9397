"""`connections jobs`: a finished job's stored result."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import Failure, emit, in_session, json_option


@click.group()
def jobs() -> None:
    """Look at job results."""


@jobs.command("show")
@click.argument("job_id")
@json_option
def jobs_show(job_id: str, as_json: bool) -> None:
    """A finished job's stored result: the same object the task returned."""
    from worker.service.jobs import stored_result

    result = in_session(lambda s: stored_result(s, job_id))
    if result is None:
        raise Failure("not_found", f"no finished job {job_id}", key="reason")
    emit(result, as_json, render.stored_job)
