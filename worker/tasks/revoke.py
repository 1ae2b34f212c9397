"""`credentials.revoke`: revoking a removed account's credentials again, in the background, when
the provider was down at removal. The order carries the credentials sealed (never in the clear on
the broker); the task retries with backoff while the provider stays down, at most `MAX_RETRIES`
times, and writes the final outcome to the audit trail (`worker.service.revocation.retry`)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task, signals
from sqlalchemy.exc import OperationalError

from connectors.base import TemporaryFailure
from worker.celery_app import app
from worker.runtime import get_deps
from worker.service import revocation

log = structlog.get_logger(__name__)

NAME = "credentials.revoke"
MAX_RETRIES = 5
BACKOFF_SECONDS = 30  # then 60, 120, 240, 480: the provider has about a quarter of an hour
BACKOFF_MAX_SECONDS = 900


def countdown(retries: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: doubling from BACKOFF_SECONDS, or what the provider asked."""
    wait = min(BACKOFF_MAX_SECONDS, BACKOFF_SECONDS * 2**retries)
    return max(wait, retry_after or 0)


@app.task(
    name=NAME,
    bind=True,
    ignore_result=True,
    max_retries=MAX_RETRIES,
    autoretry_for=(OperationalError,),
    retry_backoff=BACKOFF_SECONDS,
)
def revoke_later(self: Task, **order: Any) -> bool | None:
    last = self.request.retries >= MAX_RETRIES
    try:
        return revocation.retry(get_deps(), order, last=last)
    except TemporaryFailure as exc:
        log.info("revoke_retry_later", tries=self.request.retries + 1)
        wait = countdown(self.request.retries, exc.retry_after)
        raise self.retry(exc=exc, countdown=wait) from None


def send(order: dict[str, Any]) -> None:
    """Queue a retry order (after the removal committed)."""
    revoke_later.apply_async(kwargs=order, countdown=countdown(0))


@signals.worker_init.connect
def _install(**_: Any) -> None:
    """Only a Celery worker runs jobs over the broker, so only there do removals queue retries;
    the process's pool children inherit it."""
    revocation.send_retries_with(send)
