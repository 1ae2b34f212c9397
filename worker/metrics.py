"""The Prometheus families of the contract that the work itself counts, and the one-line calls the
code doing that work makes. The gauges of the database's state are computed apart, cheaply, by
beat (`worker.observe.state`); webhook answers are counted by the ingest (`worker.api.webhooks`).
How each process serves them, several processes per container included: `worker.observe`.

Importing this module imports prometheus_client, whose value storage (one process, or files
shared by a process group) is chosen then: a process that leads a group calls
`worker.observe.group.start_group` before anything imports this."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from prometheus_client import Counter, Gauge, Histogram

CHECKS = Counter(
    "connections_checks_total",
    "Checks of an account at its provider, by outcome: passed, or the error code it found",
    ["provider", "outcome"],
)
CHECK_SECONDS = Histogram(
    "connections_check_seconds",
    "Time to check one account (a refresh it needed included)",
    ["provider"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
EVENTS = Counter(
    "connections_events_processed_total",
    "Provider events processed, by what became of them: applied, recorded (a topic that sets "
    "nothing), stale (older than what an account has), unroutable, failed (after its last try)",
    ["provider", "outcome"],
)
JOBS = Counter(
    "connections_jobs_total", "Jobs finished, by task and result status", ["task", "status"]
)
JOB_SECONDS = Histogram(
    "connections_job_seconds",
    "Time to run a job",
    ["task"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REFRESHES = Counter(
    "connections_refreshes_total",
    "Credential refreshes at the provider, by outcome: refreshed, or the error code",
    ["provider", "outcome"],
)

# What an outcome that is neither a pass nor a provider's error (a bug, a lost database) reads.
CRASHED = "crashed"
# The webhook answers of the contract, by the status code the ingest sends; a 404 is a URL for
# an account we do not have, a 500 our own fault the provider will retry.
WEBHOOK_ANSWERS: Mapping[int, str] = {
    400: "malformed",
    401: "refused",
    404: "refused",
    413: "too_large",
    500: "unavailable",
    503: "unavailable",
}


def outcome_label(outcome: object) -> str:
    """`passed` for a result, the error code for a provider's error, else `crashed`."""
    if not isinstance(outcome, BaseException):
        return "passed"
    code = getattr(outcome, "code", None)
    return str(code) if code is not None else CRASHED


class _Account(Protocol):
    @property
    def type(self) -> str: ...


class _Probe(Protocol):
    @property
    def outcome(self) -> object: ...


P = ParamSpec("P")
A = TypeVar("A", bound=_Account)
R = TypeVar("R", bound=_Probe)


def count_check(provider: str, outcome: object, seconds: float) -> None:
    CHECKS.labels(provider, outcome_label(outcome)).inc()
    CHECK_SECONDS.labels(provider).observe(seconds)


def checked(provider: str, probe: R, seconds: float = 0.0) -> R:
    """Count a check that was decided without asking the provider; returns `probe`."""
    count_check(provider, probe.outcome, seconds)
    return probe


def timed_check(
    probe: Callable[Concatenate[Any, A, P], Awaitable[R]],
) -> Callable[Concatenate[Any, A, P], Coroutine[Any, Any, R]]:
    """Count and time each check of `probe(deps, account, ...)`, crashes included."""

    @functools.wraps(probe)
    async def timed(deps: Any, account: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            found = await probe(deps, account, *args, **kwargs)
        except Exception as exc:
            count_check(account.type, exc, time.perf_counter() - started)
            raise
        count_check(account.type, found.outcome, time.perf_counter() - started)
        return found

    return timed


@contextmanager
def refreshing(provider: str) -> Iterator[None]:
    """Count the refresh done inside: `refreshed`, or how it failed."""
    try:
        yield
    except Exception as exc:
        REFRESHES.labels(provider, outcome_label(exc)).inc()
        raise
    REFRESHES.labels(provider, "refreshed").inc()


def count_events(counts: Mapping[tuple[str, str], int]) -> None:
    """Add processed events, by (provider, outcome)."""
    for (provider, outcome), n in counts.items():
        EVENTS.labels(provider, outcome).inc(n)


@functools.cache
def _stream_connected(provider: str) -> Gauge:
    # Made on first use, so only the listener's process has it: made at import, every process
    # of a group would report a 0 of its own.
    return Gauge(
        f"connections_{provider}_stream_connected",
        f"1 while the {provider} listener is subscribed to its event stream, else 0",
        multiprocess_mode="livemax",
    )


def stream_connected(provider: str, connected: bool) -> None:
    """`connections_<provider>_stream_connected`: the listener of a provider's event stream."""
    _stream_connected(provider).set(1 if connected else 0)
