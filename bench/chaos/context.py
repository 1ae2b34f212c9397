"""What a chaos scenario works with: the run's options and its running parts. Its own module, so
the scenarios, the measurements and the runner all import it and none imports another."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench.chaos.jobs import JobDriver
from bench.chaos.servers import PostgresCluster, RedisServer
from bench.chaos.stack import Stack
from bench.chaos.webhooks import Webhooks
from tests.fixtures.checks import CheckedStripe


@dataclass
class Options:
    rate: float = 100.0  # webhooks a second
    seconds: float = 15.0  # of webhooks, the fault made meanwhile
    job_rate: float = 2.0  # accounts.add a second
    drain_bound: float = 120.0  # the sweeper re-queues a lost event after 60 to 90 s
    job_bound: float = 60.0  # every job answered this long after the load (resends included)
    settle_bound: float = 30.0  # every account connected this long after the provider recovers
    restart_policy: bool = False


@dataclass
class Run:
    """What a scenario's fault works with."""

    options: Options
    cluster: PostgresCluster
    redis: RedisServer
    stack: Stack
    sim: CheckedStripe
    webhooks: Webhooks
    jobs: JobDriver
    url: str
    began: float
    notes: list[str] = field(default_factory=list)
    settled_at: float | None = None  # provider faults: when every account was connected again

    def at(self, fraction: float) -> None:
        """Sleep until `fraction` of the webhook load has been sent."""
        time.sleep(max(0.0, self.began + fraction * self.options.seconds - time.time()))
