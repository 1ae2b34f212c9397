"""The scenarios: each a fault made while webhooks and jobs are under way. A fault returns when
it started and when it ended (the system's recovery is timed from the end)."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis

from bench.chaos.context import Run
from bench.chaos.invariants import dsn

Window = tuple[float, float]
OUTAGE_SECONDS = 20.0  # a provider failing for a while
HANG_SECONDS = 12.0  # longer than the connectors' 10 s timeout
# kombu's Redis transport: delivered, unacknowledged messages, each [message, exchange, queue]
UNACKED = "unacked"


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault: Callable[[Run], Window] | None
    quick: bool = False
    appendonly: bool = False  # Redis keeps its data across a restart
    empties_redis: bool = False  # the fault leaves Redis empty (the stream's entries gone)
    copies: int = 1  # each webhook sent this many times at once
    job_copies: int = 1  # each job sent this many times at once, one request id
    rate: float | None = None  # webhooks a second, else the suite's
    seconds: float | None = None  # of webhooks, else the suite's
    adds: int = 0  # adds sent all at once (else a steady rate)
    latency: float = 0.0  # the provider's answers take this long
    checked_accounts: int = 0  # Stripe accounts checked on schedule, besides the jobs' ones
    # What recovery is timed to: "service" (a webhook accepted and an event processed after the
    # fault), "jobs" (a job answered after it), "accounts" (every account connected again).
    recovers: str = "service"


def restart(run: Run, role: str, sig: int) -> float:
    """Signal `role`, wait for it to end, start it again (as an orchestrator would); how long
    it took to end."""
    took = run.stack[role].signal(sig)
    run.stack[role].start()
    return took


def worker_killed(run: Run) -> Window:
    """SIGKILL of the events worker (the whole prefork group) mid-processing, twice, each time
    started again at once (as an orchestrator would)."""
    waiting = []
    began = 0.0
    for fraction in (1 / 3, 2 / 3):
        run.at(fraction)
        began = began or time.time()
        run.stack["worker-events"].signal(signal.SIGKILL)
        waiting.append(received(run))
        run.stack["worker-events"].start()
    run.notes.append(f"accepted events not yet processed at each kill: {waiting}")
    return began, time.time()


def received(run: Run) -> int:
    """Events stored and not yet processed."""
    with psycopg.connect(dsn(run.url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM inbound_events WHERE status = 'received'"
        ).fetchone()
    return int(row[0]) if row else 0


def job_killed(run: Run) -> Window:
    """SIGKILL of the jobs worker with adds in flight; every unanswered job then sent again
    with its request id."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answered = sum(1 for j in run.jobs.jobs if j.result is not None)
        if answered >= run.jobs.count // 3:
            break
        time.sleep(0.05)
    began = time.time()
    run.stack["worker-jobs"].signal(signal.SIGKILL)
    with psycopg.connect(dsn(run.url)) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE status = 'running'").fetchone()
    run.notes.append(
        f"killed with {answered} of {run.jobs.count} adds answered, "
        f"{row[0] if row else '?'} job rows running"
    )
    run.stack["worker-jobs"].start()
    run.jobs.resend_unanswered_now()
    return began, time.time()


# Every role in turn, then the two workers that hold messages longest, again.
ROLLING = (
    "ingest",
    "worker-events",
    "worker-jobs",
    "worker-checks",
    "beat",
    "worker-events",
    "worker-jobs",
)


def rolling_restarts(run: Run) -> Window:
    """SIGTERM and start again, one process at a time: every role, then the events and jobs
    workers again."""
    run.at(0.2)
    began = time.time()
    took = []
    for role in ROLLING:
        took.append(f"{role} {restart(run, role, signal.SIGTERM):.1f}")
    run.notes.append("seconds each took to stop after SIGTERM: " + ", ".join(took))
    return began, time.time()


def redis_restarted(run: Run) -> Window:
    """The Redis server killed (every connection drops) at a moment the events worker holds an
    unacknowledged message (a running or prefetched task's, with late acks), and started again
    3 s later: empty, or with its append-only file."""
    run.at(1 / 3)
    held: Counter[str] = Counter()
    deadline = time.monotonic() + 10
    with redis.Redis.from_url(run.redis.url) as client:
        while time.monotonic() < deadline and not held["events"]:
            held = Counter(json.loads(v)[2] for v in client.hvals(UNACKED))
            time.sleep(0.002)
    began = time.time()
    run.redis.kill()
    run.notes.append(f"killed while the workers held unacknowledged messages of {dict(held)}")
    time.sleep(3)
    run.redis.start()
    return began, time.time()


def postgres_restarted(run: Run) -> Window:
    """PostgreSQL stopped in immediate mode (a crash: connections cut, recovery at start) and
    started again 10 s later."""
    run.at(1 / 3)
    began = time.time()
    run.cluster.stop("immediate")
    time.sleep(10)
    run.cluster.start()
    return began, time.time()


def provider_failing(mode: int | str) -> Callable[[Run], Window]:
    def fault(run: Run) -> Window:
        run.at(0.15)
        run.sim.hang_seconds = HANG_SECONDS
        began = time.time()
        run.sim.outage = mode
        time.sleep(OUTAGE_SECONDS)
        run.sim.outage = None
        ended = time.time()
        converged(run, ended)
        return began, ended

    fault.__doc__ = f"Stripe answers {mode} to every check for {OUTAGE_SECONDS:.0f} s."
    return fault


def converged(run: Run, ended: float) -> None:
    """Note when, after the provider recovered, every account was connected and no incident
    was open (within the settle bound); the first is the scenario's recovery."""
    connected = closed = None
    deadline = time.monotonic() + run.options.settle_bound
    while time.monotonic() < deadline and (connected is None or closed is None):
        with psycopg.connect(dsn(run.url)) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM accounts WHERE status <> 'connected'), "
                "(SELECT count(*) FROM provider_incidents WHERE ended_at IS NULL)"
            ).fetchone()
        assert row is not None
        if connected is None and row[0] == 0:
            connected = time.time()
        if closed is None and row[1] == 0:
            closed = time.time()
        time.sleep(0.25)
    run.settled_at = connected

    def after(moment: float | None) -> str:
        return "not within the bound" if moment is None else f"{moment - ended:.1f} s after"

    run.notes.append(
        f"after the provider recovered: every account connected {after(connected)}, "
        f"no incident open {after(closed)}"
    )


def provider_scenario(name: str, what: str, mode: int | str) -> Scenario:
    """Scheduled checks of 40 accounts (and the jobs' ones) while Stripe fails for a while."""
    fault = provider_failing(mode)
    return Scenario(
        name, what, fault, rate=50.0, seconds=30.0, checked_accounts=40, recovers="accounts"
    )


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "duplicates",
            "every webhook delivered ten times at once, every job sent twice at once",
            None,
            quick=True,
            copies=10,
            job_copies=2,
            rate=20.0,
            seconds=10.0,
        ),
        Scenario(
            "worker-kill",
            "SIGKILL of the events worker mid-processing, twice",
            worker_killed,
            quick=True,
        ),
        Scenario(
            "job-kill",
            "SIGKILL of the jobs worker with 60 adds in flight, then every unanswered one resent",
            job_killed,
            adds=60,
            latency=0.25,
            recovers="jobs",
            rate=50.0,
        ),
        Scenario(
            "rolling-restart",
            "SIGTERM and restart of each process in turn, events and jobs workers twice",
            rolling_restarts,
        ),
        Scenario(
            "redis-restart",
            "Redis killed, back empty 3 s later",
            redis_restarted,
            empties_redis=True,
        ),
        Scenario(
            "redis-restart-aof",
            "Redis with append-only persistence killed, back with its data 3 s later",
            redis_restarted,
            appendonly=True,
        ),
        Scenario(
            "postgres-restart",
            "PostgreSQL stopped (immediate mode) for 10 s, then started",
            postgres_restarted,
            quick=True,
        ),
        provider_scenario("provider-500", "Stripe answers 500 for 20 s", 500),
        provider_scenario(
            "provider-timeout", "Stripe answers nothing for 20 s (each call hangs 12 s)", "timeout"
        ),
        provider_scenario("provider-429", "Stripe answers 429 for 20 s", 429),
    )
}
