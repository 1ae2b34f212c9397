"""The Celery app: JSON only, late acks, a small prefetch for short tasks, one queue per kind."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, signals
from kombu import Exchange, Queue

from worker.logconfig import configure_logging
from worker.schedules import BEAT_SCHEDULE
from worker.settings import get_settings

QUEUES = ("jobs", "checks", "events")
# Another service's Celery app sends to "celery" unless it routes; we take those jobs too.
DEFAULT_INTAKE = "celery"
ALL_QUEUES = (*QUEUES, DEFAULT_INTAKE)


def transport_options(broker_url: str) -> dict[str, Any]:
    """Redis redelivers an unacknowledged message after the visibility timeout; it must exceed
    the longest task, or a slow job runs twice."""
    if broker_url.startswith(("redis://", "rediss://")):
        return {"visibility_timeout": 3600}
    return {}


def make_app() -> Celery:
    settings = get_settings()
    app = Celery("connections", include=["worker.tasks"])
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.result_backend,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=4,
        # Each queue its own direct exchange and key: a shared key would copy every message
        # into every queue.
        task_queues=[Queue(n, Exchange(n, type="direct"), routing_key=n) for n in ALL_QUEUES],
        task_default_queue="jobs",
        task_routes={
            "accounts.check": {"queue": "checks"},
            "checks.*": {"queue": "checks"},
            "events.*": {"queue": "events"},
        },
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options(settings.broker_url),
        result_expires=7 * 24 * 3600,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=BEAT_SCHEDULE,
    )
    return app


app = make_app()


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)


@signals.worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    from worker.runtime import reset_deps, tune_collector

    reset_deps()
    tune_collector()


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))


@signals.task_postrun.connect
def _unbind_task(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()
