"""The Celery app: JSON only, late acks, a small prefetch for short tasks, one queue per kind;
and its logging: every line through `worker.logconfig`, routine ticks at debug, no message body."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from functools import cached_property
from typing import Any

import click
import structlog
from celery import Celery, signals
from celery.app import trace
from celery.apps import beat as celery_beat
from celery.apps import worker as celery_worker
from celery.worker.consumer import consumer
from kombu import Exchange, Queue

from worker import startup
from worker.logconfig import configure_logging, secret_values, secrets_known, wants_json
from worker.observe import hooks as metrics_hooks  # noqa: F401 (connects its Celery signals)
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


class _QuietBeat(celery_beat.Beat):
    """`celery beat` without its plain-text banner when the logs are JSON."""

    def __init__(self, *args: Any, quiet: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, quiet=quiet or wants_json(get_settings().log_format), **kwargs)


class _App(Celery):
    """Celery, with the beat above (`celery beat` takes its class from the app)."""

    @cached_property
    def Beat(self) -> Any:  # noqa: N802 (Celery's name)
        return self.subclass_with_self(_QuietBeat)


def make_app() -> Celery:
    settings = startup.settings_or_exit()
    app = _App("connections", include=["worker.tasks"])
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
        # What a task prints becomes a log line by our own redirect (`configure_logging`).
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
        beat_schedule=BEAT_SCHEDULE,
    )
    return app


app = make_app()


# Routine ticks: beat sends a due task every second or two, and an idle periodic task returns 0.
# At info they were 500 of 575 lines in two idle minutes. Real work keeps its info line (a tick
# that returned a count, and the tasks' own `events_requeued`, `checks_claimed`).
ROUTINE_TASKS = frozenset(entry["task"] for entry in BEAT_SCHEDULE.values())
BEAT_SENDING = "Scheduler: Sending due task %s (%s)"
# A tick that expired while no worker ran (after an outage, a burst of them).
DISCARDED = "Discarding revoked task: %s[%s]"
# Celery's reports of a refused message (unknown, unregistered, invalid, or a refused content type
# such as pickle) quote its body and headers: a job's credentials, an OAuth code. The reason stays.
WITHOUT_CONTENTS = "; the message is discarded, its contents not logged (they may hold credentials)"
REFUSALS = {
    consumer.UNKNOWN_FORMAT: ("Received and deleted unknown message. Wrong destination?!?", 0),
    consumer.UNKNOWN_TASK_ERROR: ("Received unregistered task of type %s", 1),
    consumer.INVALID_TASK_ERROR: ("Received invalid task message: %s", 1),
    consumer.MESSAGE_DECODE_ERROR: ("Can't decode message body: %r [type:%r encoding:%r]", 3),
    "Could not restore message: %r": ("Could not restore an unacknowledged message", 0),
}


def routine_at_debug(record: logging.LogRecord) -> bool:
    """Logger filter: a routine tick is lowered to debug (and dropped unless debug is on)."""
    context = record.args if isinstance(record.args, dict) else {}
    args = record.args if isinstance(record.args, tuple) else ()
    task = context.get("name") or (args[0] if args else None)
    if record.msg == BEAT_SENDING or (
        task in ROUTINE_TASKS
        and (
            record.msg in (trace.LOG_RECEIVED, DISCARDED)
            or (record.msg == trace.LOG_SUCCESS and context["return_value"] == "0")
        )
    ):
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)
    return True


def without_contents(record: logging.LogRecord) -> bool:
    """Logger filter: a refused message is reported by its reason only."""
    refusal = REFUSALS.get(record.msg) if isinstance(record.msg, str) else None
    if refusal is not None:
        record.msg, kept = refusal[0] + WITHOUT_CONTENTS, refusal[1]
        record.args = tuple(record.args if isinstance(record.args, tuple) else ())[:kept]
    return True


for _name in ("celery.beat", "celery.worker.strategy", "celery.app.trace", "celery.worker.request"):
    logging.getLogger(_name).addFilter(routine_at_debug)
for _name in ("celery.worker.consumer.consumer", "kombu.transport.redis"):
    logging.getLogger(_name).addFilter(without_contents)


def _level(cli_level: Any) -> str:
    """LOG_LEVEL, unless this command line gave `--loglevel` (worker or beat): then that."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("loglevel") if ctx is not None else None
    given = source not in (None, click.core.ParameterSource.DEFAULT)
    if given and isinstance(cli_level, int):
        return logging.getLevelName(cli_level)
    return get_settings().log_level


def _say(msg: str, *_: Any) -> None:
    """Celery's shutdown notices, which it writes straight to stdout, as log lines."""
    logging.getLogger("celery.apps.worker").info(msg.strip())


# With a receiver of `setup_logging`, Celery configures no logging of its own: it neither sends
# `after_setup_logger`/`after_setup_task_logger` nor redirects stdout; its task loggers propagate
# to the root. What it prints is captured by `configure_logging(whole_process=True)`.
@signals.setup_logging.connect
def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_format, _level(loglevel), whole_process=True)
    if wants_json(settings.log_format):
        celery_worker.safe_say = _say


@signals.celeryd_init.connect
def _worker_starts(instance: Any = None, options: Any = None, **_: Any) -> None:
    """Before the worker checks its privileges (a warning) and prints its banner: JSON lines
    from the first, and no banner."""
    _setup_logging((options or {}).get("loglevel"))
    if wants_json(get_settings().log_format):
        instance.quiet = True


@signals.worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    from worker.runtime import reset_deps, tune_collector

    reset_deps()
    tune_collector()


# Each running task's `secrets_known` block, by task id (an eager task may run inside another).
_task_secrets: dict[str, AbstractContextManager[None]] = {}


@signals.task_prerun.connect
def _bind_task(task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any) -> None:
    """The task's ids on every line it logs; the credentials in its arguments (a job's
    `credentials`, an OAuth `code`) known to the scrubber until it ends, Celery's lines included."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, task=getattr(task, "name", None))
    block = secrets_known(secret_values(kwargs))
    block.__enter__()  # left in postrun: no `with` spans the two signals
    _task_secrets[str(task_id)] = block


@signals.task_postrun.connect
def _unbind_task(task_id: str | None = None, **_: Any) -> None:
    structlog.contextvars.clear_contextvars()
    block = _task_secrets.pop(str(task_id), None)
    if block is not None:
        block.__exit__(None, None, None)
