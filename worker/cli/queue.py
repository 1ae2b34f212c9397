"""Talking to the workers over the broker, as another service does: queue a job and wait for its
result, and ask which workers answer. The CLI itself never runs a job: the worker's processes
have the provider settings and the connections to use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from worker.cli.base import Failure

if TYPE_CHECKING:
    from celery import Celery

# Reaching the broker is one quick attempt: the operator is waiting.
CONNECT = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "timeout": 3}


@contextmanager
def client() -> Iterator[Celery]:
    """A Celery app on this process's settings, with the worker's queues and routes; closed
    after use so no connection outlives the command."""
    from worker.celery_app import make_app

    app = make_app()
    try:
        yield app
    finally:
        app.close()


def shown(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def ensure_broker(app: Celery) -> None:
    """One connection attempt, or a Failure naming the broker (its password hidden)."""
    from worker.cli.errors import first_line, is_connection_error

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(**CONNECT)
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        raise Failure(
            "broker_unreachable",
            f"cannot reach the broker at {shown(app.conf.broker_url)} (CONNECTIONS_BROKER_URL): "
            f"{first_line(exc)}",
        ) from None


def queue_job(app: Celery, name: str, kwargs: dict[str, Any]) -> str:
    """Send the job `name` over the broker (routed as the worker routes it); its job id."""
    ensure_broker(app)
    job_id = str(uuid.uuid4())
    app.send_task(name, kwargs=kwargs, task_id=job_id)
    return job_id


def wait_for(app: Celery, job_id: str, timeout: float) -> dict[str, Any]:
    """The job's result, as the task returned and stored it; a Failure when none comes in
    `timeout` seconds (the job stays queued) or the task ended without one."""
    from celery.exceptions import TimeoutError as NoResult

    from worker.cli.errors import first_line, is_connection_error

    pending = app.AsyncResult(job_id)
    try:
        value = pending.get(timeout=timeout, propagate=False, interval=0.2)
    except NoResult:
        raise Failure(
            "timeout",
            f"no result within {timeout:g}s: is a worker consuming the checks queue "
            f"(`connections status` lists the workers)? The job stays queued as {job_id}; "
            f"`connections jobs show {job_id}` shows its result once it ran",
        ) from None
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        raise Failure(
            "result_backend_unreachable",
            f"job {job_id} is queued, but the result backend at "
            f"{shown(app.conf.result_backend)} (CONNECTIONS_RESULT_BACKEND) cannot be read: "
            f"{first_line(exc)}",
        ) from None
    if not isinstance(value, dict):
        raise Failure(
            "failed",
            f"job {job_id} ended in the worker without a result ({type(value).__name__}); "
            "the worker's log says why",
        )
    return value


def workers(app: Celery, timeout: float) -> tuple[list[str], str | None]:
    """The workers that answer a ping within `timeout` seconds, and what kept others from being
    asked (an unreachable broker) or None: the status screen shows it rather than fail."""
    from worker.cli.errors import first_line, is_connection_error

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(**CONNECT)
            replies = app.control.ping(timeout=timeout, connection=conn) or []
    except Exception as exc:
        if not is_connection_error(exc):
            raise
        return [], f"broker unreachable at {shown(app.conf.broker_url)}: {first_line(exc)}"
    return sorted(name for reply in replies for name in reply), None
