"""Answering scrapes: the registry a process serves, and the HTTP server of the processes that
have no web server of their own (a Celery worker, beat, the Fortnox listener) on METRICS_PORT.

A process in a group (`group`) serves the group's numbers, read from every member's files at
each scrape, so whichever member answers, the counts are the same. A process alone serves its
own registry."""

from __future__ import annotations

import os

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    multiprocess,
    start_http_server,
    values,
)

from worker.observe.group import ENV
from worker.settings import METRICS_PORTS, get_settings

log = structlog.get_logger(__name__)


def in_group() -> bool:
    """Whether this process keeps its values in its group's files."""
    return bool(os.environ.get(ENV)) and bool(getattr(values.ValueClass, "_multiprocess", False))


def group_registry() -> CollectorRegistry:
    """The group's numbers when this process is in one, else this process's own."""
    if not in_group():
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve(role: str, registry: CollectorRegistry) -> int | None:
    """Serve `registry` on this role's METRICS_PORT (all interfaces, for a scraper in another
    container); the port, or None when it cannot be had. A port in use does not stop the
    process: its work matters more, and the scraper reports the target down."""
    port = get_settings().metrics_port or METRICS_PORTS[role]
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.error("metrics_not_served", role=role, port=port, error=str(exc))
        return None
    log.info("metrics_served", role=role, port=port)
    return port


def process_ended(pid: int) -> None:
    """A member of the group is gone: its `live*` gauges no longer count (its counters do)."""
    if in_group():
        multiprocess.mark_process_dead(pid)


def serve_alone(role: str) -> int | None:
    """Serve this process's own numbers: a process with no children (the Fortnox listener)."""
    return serve(role, REGISTRY)
