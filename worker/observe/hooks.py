"""Metrics in the Celery processes, by their signals: a worker (and its prefork pool) is a group
(`group`) whose parent serves every child's numbers on METRICS_PORT; beat serves its own, with
the gauges of the database's state (`state`). Connected when `worker.celery_app` is imported;
nothing here imports prometheus_client before the task modules are loaded."""

from __future__ import annotations

import os
import sys
from typing import Any

import structlog
from celery import signals

from worker.observe.group import start_group

log = structlog.get_logger(__name__)


@signals.import_modules.connect
def _start_group(**_: Any) -> None:
    """A worker or beat about to load the task modules, which import prometheus_client."""
    if os.environ.get("FORKED_BY_MULTIPROCESSING"):
        return  # a pool child started afresh (spawn): it belongs to its parent's group
    if "prometheus_client" in sys.modules:
        log.warning("metrics_group_not_started", reason="prometheus_client imported earlier")
        return
    start_group("celery")


@signals.worker_ready.connect
def _serve_worker(**_: Any) -> None:
    from worker.observe.serve import group_registry, serve

    serve("worker", group_registry())


@signals.worker_process_shutdown.connect
def _child_ended(pid: int | None = None, **_: Any) -> None:
    from worker.observe.serve import process_ended

    process_ended(pid or os.getpid())


@signals.beat_init.connect
def _serve_beat(**_: Any) -> None:
    from prometheus_client import REGISTRY

    from connectors.registry import PROVIDERS
    from models import Database
    from worker.observe.serve import serve
    from worker.observe.state import StateCollector
    from worker.settings import get_settings

    # Its own database handle: beat needs nothing else of the worker's (no keys, no connectors).
    REGISTRY.register(StateCollector(Database(get_settings().database_url), list(PROVIDERS)))
    serve("beat", REGISTRY)
