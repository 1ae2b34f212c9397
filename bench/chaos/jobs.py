"""Jobs sent over Celery while the faults happen, the way another service sends them: each
`accounts.add` with a request id and a new key at the Stripe simulator; for every other added
account an `integrations.link` and then an `accounts.remove` that must be refused (`in_use`);
for every fourth, a remove that must succeed. A job is answered when the `jobs` table holds its
result (read from PostgreSQL, which survives a broker restart); one unanswered for
`resend_after` seconds is sent again with the same request id, as a sender's retry is."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from celery import Celery

from tests.simulators.stripe import StripeSimulator
from worker.service.sealed import seal
from worker.vault import Vault

ADMIN = {"user_id": "chaos-admin", "role": "admin"}
ORG = "org-chaos"


@dataclass
class Job:
    kind: str  # add, link, remove (must succeed), remove-referenced (must be refused)
    task: str
    kwargs: dict[str, Any]
    item: int  # the number of the add this job follows
    task_ids: list[str] = field(default_factory=list)
    sent_at: float = 0.0
    result: dict[str, Any] | None = None
    answered_at: float | None = None

    @property
    def request_id(self) -> str:
        return str(self.kwargs["request_id"])


class JobDriver:
    """Sends `count` adds at `rate` a second (all at once when `rate` is 0) and their follow-ups
    in a thread, each sent `copies` times (the same request id at once), until `finish`."""

    def __init__(
        self,
        broker_url: str,
        database_url: str,
        sim: StripeSimulator,
        vault: Vault,
        *,
        tag: str,
        count: int,
        rate: float,
        copies: int = 1,
        resend_after: float = 20.0,
    ) -> None:
        self.app = Celery("chaos-sender", broker=broker_url)
        self.app.conf.update(task_serializer="json", broker_connection_retry_on_startup=True)
        self.dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
        self.sim, self.vault = sim, vault
        self.tag, self.count, self.rate, self.copies = tag, count, rate, copies
        self.resend_after = resend_after
        self.jobs: list[Job] = []
        self.keys: list[str] = []
        self.send_failures = 0
        self._adds_sent = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobs", daemon=True)

    def start(self) -> JobDriver:
        self._thread.start()
        return self

    def resend_unanswered_now(self) -> None:
        """Every unanswered job is overdue from now: sent again on the next pass."""
        for job in self.jobs:
            if job.result is None:
                job.sent_at = 0.0

    def finish(self, timeout: float) -> None:
        """Keep polling and resending until every job is answered or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.all_answered():
            time.sleep(0.5)
        self._done.set()
        self._thread.join(timeout=30)
        self.app.close()

    def all_answered(self) -> bool:
        return self._adds_sent >= self.count and all(j.result is not None for j in self.jobs)

    def unanswered(self) -> list[Job]:
        return [j for j in self.jobs if j.result is None]

    def _run(self) -> None:
        began = time.monotonic()
        while not self._done.is_set():
            due = self.count if not self.rate else int((time.monotonic() - began) * self.rate) + 1
            while self._adds_sent < min(due, self.count):
                self._add(self._adds_sent)
                self._adds_sent += 1
            self._poll()
            now = time.time()
            for job in self.jobs:
                if job.result is None and now - job.sent_at > self.resend_after:
                    self._send(job)
            time.sleep(0.2)

    def _add(self, i: int) -> None:
        _, key = self.sim.add_account(f"Chaos {i}")
        self.keys.append(key)
        kwargs = {
            "org_id": ORG,
            "actor": ADMIN,
            "type": "stripe",
            "name": self.account_name(i),
            "credentials_sealed": seal(self.vault, {"api_key": key}),
            "request_id": f"{self.tag}-add-{i}",
        }
        self._new(Job("add", "accounts.add", kwargs, i))

    def _new(self, job: Job) -> None:
        self.jobs.append(job)
        self._send(job)

    def _send(self, job: Job) -> None:
        job.sent_at = time.time()
        for _ in range(self.copies):
            task_id = str(uuid.uuid4())
            try:
                self.app.send_task(job.task, kwargs=job.kwargs, queue="jobs", task_id=task_id)
            except Exception:  # the broker is away: this copy is sent again when overdue
                self.send_failures += 1
                continue
            job.task_ids.append(task_id)

    def _poll(self) -> None:
        waiting = {tid: job for job in self.jobs if job.result is None for tid in job.task_ids}
        if not waiting:
            return
        try:
            with psycopg.connect(self.dsn, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT id, result FROM jobs WHERE id = ANY(%s) AND result IS NOT NULL",
                    (list(waiting),),
                ).fetchall()
        except psycopg.Error:
            return  # the database is away: ask again on the next pass
        for task_id, result in rows:
            job = waiting[task_id]
            if job.result is None:
                job.result, job.answered_at = result, time.time()
                self._follow_up(job)

    def account_name(self, i: int) -> str:
        return f"chaos {self.tag} {i}"

    def _follow_up(self, job: Job) -> None:
        assert job.result is not None
        if job.result["status"] != "succeeded":
            return
        i = job.item
        if job.kind == "add":
            account_id = job.result["account"]["id"]
            if i % 2 == 0:
                kwargs = {
                    "org_id": ORG,
                    "integration_id": f"wf-{self.tag}-{i}",
                    "account_id": account_id,
                    "name": "Chaos workflow",
                    "request_id": f"{self.tag}-link-{i}",
                }
                self._new(Job("link", "integrations.link", kwargs, i))
            elif i % 4 == 1:
                self._remove("remove", account_id, i)
        elif job.kind == "link":
            self._remove("remove-referenced", job.kwargs["account_id"], i)

    def _remove(self, kind: str, account_id: str, i: int) -> None:
        kwargs = {
            "org_id": ORG,
            "actor": ADMIN,
            "account_id": account_id,
            "request_id": f"{self.tag}-{kind}-{i}",
        }
        self._new(Job(kind, "accounts.remove", kwargs, i))
