"""One scenario from start to verdict: a fresh database on the suite's cluster and a fresh Redis
server, the processes, webhooks and jobs under way while the scenario makes its fault, then the
provider's resends, the drain, the convergence of statuses, and every invariant."""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from cryptography.fernet import Fernet

from bench.chaos import invariants, measure, setup
from bench.chaos.context import Options, Run
from bench.chaos.jobs import JobDriver
from bench.chaos.report import Row
from bench.chaos.servers import PostgresCluster, RedisServer
from bench.chaos.stack import Stack
from bench.chaos.webhooks import Webhooks
from tests.fixtures.checks import CheckedStripe
from worker.vault import Vault

if TYPE_CHECKING:
    from bench.chaos.scenarios import Scenario

RESEND_BOUND = 30.0  # how long the provider keeps resending what was not answered 200
SLOW_STOP = 5.0  # a process that takes longer to end on SIGTERM (at the end) is noted


class Phases:
    """How long each phase of a scenario took, for its details line."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.took: list[str] = []

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.took.append(f"{name} {now - self.last:.0f}")
        self.last = now

    def line(self) -> str:
        return f"seconds: {', '.join(self.took)}"


def run_scenario(
    scenario: Scenario, options: Options, cluster: PostgresCluster, sim: CheckedStripe, logs: Path
) -> Row:
    logs.mkdir(parents=True, exist_ok=True)
    phases = Phases()
    postgres_log_from = len(cluster.log())  # the cluster (and its log) serves every scenario
    sim.reset_checks()
    sim.script.latency = scenario.latency
    database = f"chaos_{scenario.name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    url = cluster.create_database(database)
    key, token = Fernet.generate_key().decode(), secrets.token_hex(16)
    api_keys = setup.seed(url, key, sim, scenario.checked_accounts)
    redis = RedisServer(appendonly=scenario.appendonly).start()
    stack = Stack(
        setup.environment(url, redis.url, key, token, sim, logs), logs, options.restart_policy
    )
    options = dataclasses.replace(options, seconds=scenario.seconds or options.seconds)
    rate = scenario.rate or options.rate
    count = int(rate * options.seconds)
    row = Row(scenario.name)
    try:
        stack.start()
        phases.done("setup")
        webhooks = Webhooks(stack.url, count, scenario.name, scenario.copies)
        jobs = JobDriver(
            redis.url,
            url,
            sim,
            Vault([key]),
            tag=scenario.name,
            count=scenario.adds or max(1, int(options.job_rate * options.seconds)),
            rate=0.0 if scenario.adds else options.job_rate,
            copies=scenario.job_copies,
        )
        run = Run(options, cluster, redis, stack, sim, webhooks, jobs, url, time.time())
        webhooks.start(rate)
        jobs.start()
        window = scenario.fault(run) if scenario.fault else None
        webhooks.join()
        phases.done("load and fault")
        webhooks.resend_unanswered(RESEND_BOUND)
        phases.done("resends")
        jobs.finish(options.job_bound)
        phases.done("jobs")
        drained_at = measure.drain(run, options.drain_bound)
        phases.done("drain")
        settled_at = measure.settle(url, options.settle_bound)
        phases.done("settle")
        row.fill_load(webhooks, count * scenario.copies)
        row.drain = drained_at - webhooks.finished_at if drained_at else None
        if window is not None:
            row.recover = measure.recovery(run, scenario.recovers, window[1])
        slow = {name: t for name, t in stack.stop().items() if t > SLOW_STOP}
        if slow:
            run.notes.append(
                "slow to stop on SIGTERM: " + ", ".join(f"{n} {t:.1f} s" for n, t in slow.items())
            )
        phases.done("stop")

        counts = invariants.events(url, webhooks.accepted_ids())
        row.once, row.lost = counts.once, counts.lost + counts.twice
        row.failures += counts.failures
        row.failures += invariants.jobs(url, jobs)
        if scenario.recovers == "accounts" and run.settled_at is None:
            bound = options.settle_bound
            row.failures.append(f"not every account connected {bound:.0f} s after the recovery")
        if settled_at is None and invariants.not_connected(url):
            row.failures.append(f"statuses did not converge: {invariants.not_connected(url)}")
        note, failed = invariants.stream(url, redis.url, kept=not scenario.empties_redis)
        row.failures += failed
        row.failures += invariants.exits(stack.exits)
        (logs / "postgres.log").write_text(cluster.log()[postgres_log_from:])
        (logs / "redis.log").write_text(redis.log())
        kinds = setup.secrets(key, token, sim, api_keys + jobs.keys)
        row.failures += invariants.secrets_in_logs(list(stack.log_files()), kinds)
        row.restarts = stack.restarts()
        row.notes = run.notes + [measure.job_notes(jobs), note]
        if scenario.checked_accounts:
            row.notes.append(invariants.check_notes(url))
        phases.done("checks")
        row.notes.append(phases.line())
    finally:
        sim.reset_checks()
        stack.stop()
        redis.destroy()
        try:
            cluster.drop_database(database)
        except psycopg.Error:
            pass
    row.seconds = time.monotonic() - phases.began
    return row
