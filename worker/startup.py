"""Fail fast at worker and beat start: a missing or malformed setting, a bad key or an unreachable
database stops the process with one log line saying which, instead of a worker that starts and
then fails every task (or a crash loop of tracebacks).

Imported by the Celery app for its signal handlers. Each process checks what it uses: the
worker its settings, keys and database; beat (which sends tasks and serves the database's
gauges, never decrypting anything) its settings and database.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import structlog
from celery import signals

from worker.runtime import (
    ConfigurationError,
    check_database,
    close_deps,
    load_settings,
    started_deps,
)
from worker.settings import Settings

log = structlog.get_logger(__name__)

# The exit status of a process that refuses to start, as the CLI's process commands use.
REFUSED = 2


def refuse(process: str | None, problem: ConfigurationError) -> NoReturn:
    """One line, in the configured log format where that can be read, then exit."""
    from worker.logconfig import configure_logging

    fmt = os.environ.get("CONNECTIONS_LOG_FORMAT", "auto")
    configure_logging(fmt if fmt in ("auto", "json", "console") else "auto")
    named = {"process": process} if process else {}
    log.error("startup_refused", **named, error=str(problem))
    sys.exit(REFUSED)


def settings_or_exit(process: str | None = None) -> Settings:
    """The settings, or one line naming each malformed one and exit: for code that reads them
    at import (the Celery app), where nothing else could say it in one line."""
    try:
        return load_settings()
    except ConfigurationError as problem:
        refuse(process, problem)


@signals.worker_init.connect
def _check_worker(**_: Any) -> None:
    try:
        close_deps(started_deps(settings_or_exit("worker")))
    except ConfigurationError as problem:
        refuse("worker", problem)


@signals.beat_init.connect
def _check_beat(**_: Any) -> None:
    try:
        check_database(settings_or_exit("beat").database_url)
    except ConfigurationError as problem:
        refuse("beat", problem)
