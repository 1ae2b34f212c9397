"""`connections jobs`: a finished job's stored result."""

from __future__ import annotations

import click

from worker.cli import render
from worker.cli.base import emit, fail, in_session


@click.group()
def jobs() -> None:
    """Look at job results."""


@jobs.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
def jobs_show(job_id: str, as_json: bool) -> None:
    from worker.service.jobs import stored_result

    result = in_session(lambda s: stored_result(s, job_id))
    if result is None:
        fail(f"no finished job {job_id}")
    emit(result, as_json, render.stored_job)
