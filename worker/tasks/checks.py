"""Scheduled health checks: beat's `checks.schedule` tick claims the due accounts and queues them
as `checks.batch` tasks, each checking its accounts concurrently."""

from __future__ import annotations

import asyncio
from typing import Any

from worker.celery_app import app
from worker.runtime import get_deps
from worker.service.checks import schedule
from worker.service.checks.batch import BatchChecker
from worker.service.checks.cadence import Cadence
from worker.settings import get_settings

_checker: BatchChecker | None = None


def cadence() -> Cadence:
    return Cadence(interval=float(get_settings().check_interval_seconds))


def checker() -> BatchChecker:
    """This process's checker; rebuilt when the process's dependencies are (after a fork)."""
    global _checker
    if _checker is None:
        _fast_loop()
    deps = get_deps()
    if _checker is None or _checker.deps is not deps:
        _checker = BatchChecker(deps, cadence())
    return _checker


def _fast_loop() -> None:
    """uvloop for the process's event loop (the connectors' loop is made on first use): by
    measurement it carries a batch's checks with markedly less CPU (bench/README.md)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - an optional speed-up
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def send_batch(batch: schedule.Batch) -> None:
    # A message that waits past its lease is dropped: the accounts are claimed again by then.
    check_batch.apply_async(kwargs=batch.message(), expires=batch.lease)


@app.task(name="checks.schedule", ignore_result=True)
def tick() -> int:
    return schedule.tick(get_deps().db, cadence(), send_batch)


@app.task(name="checks.batch", ignore_result=True)
def check_batch(provider: Any = None, account_ids: Any = None, lease: Any = None) -> dict[str, Any]:
    batch = schedule.Batch.parse(provider, account_ids, lease)
    return checker().run(batch).as_dict()
