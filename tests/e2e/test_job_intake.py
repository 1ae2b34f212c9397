"""The job intake with real processes: `connections ingest` seals and queues each job over Redis to
a real Celery worker started with CONNECTIONS_JOB_CREDENTIALS=refuse, and the org-scoped read
follows it to its result. While a job with credentials is in flight (its provider call held open)
and after it, no key of the broker's Redis database, nor any line of either process's log, holds
the API key or the OAuth code. Plaintext credentials sent over Celery are refused by that worker,
and the envelope docs/jobs.md shows, pushed by hand, runs."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
import redis
from sqlalchemy import func, select, text

from bench.processes import Process, answers, free_port
from models import Account, Base, Database
from tests.e2e import harness
from tests.e2e.conftest import SERVICE_TOKEN
from tests.simulators.stripe import StripeSimulator
from tests.unit.test_job_schemas import GUIDE, SCHEMAS
from worker.tasks.table import JOBS, PLAINTEXT_REFUSED

ADMIN = {"user_id": "u-admin", "role": "admin"}
AUTH = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
READ = {**AUTH, "X-Actor-Id": ADMIN["user_id"], "X-Actor-Role": ADMIN["role"]}


@dataclass
class Running:
    url: str
    broker: redis.Redis
    broker_url: str
    processes: list[Process]

    def submit(self, task: str, kwargs: dict[str, Any], **more: Any) -> str:
        body = {"task": task, "kwargs": kwargs, **more}
        answer = httpx.post(f"{self.url}/api/v1/jobs", json=body, headers=AUTH, timeout=30)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        assert isinstance(job_id, str)
        return job_id

    def result(self, org_id: str, job_id: str) -> dict[str, Any]:
        """The job's result once the worker has stored it, read as the organization."""

        def done() -> dict[str, Any]:
            answer = httpx.get(f"{self.url}/api/v1/orgs/{org_id}/jobs/{job_id}", headers=READ)
            assert answer.status_code == 200, answer.text
            found = answer.json()
            assert isinstance(found, dict)
            return found

        return harness.eventually(done, timeout=60)

    def run(self, task: str, kwargs: dict[str, Any], org_id: str) -> dict[str, Any]:
        return self.result(org_id, self.submit(task, kwargs))

    def logs(self) -> str:
        return "".join(process.output() for process in self.processes)


@pytest.fixture(scope="module")
def store(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def intake_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture(scope="module")
def running(
    e2e_env: dict[str, str],
    intake_redis: int,
    stripe_sim: StripeSimulator,
    log_dir: Path,
    store: Database,
) -> Iterator[Running]:
    """An ingest and a worker on a Redis database of their own; the worker refuses plaintext
    credentials (as it does by default outside dev). The module's rows go when they stop."""
    broker = harness.redis_url(intake_redis)
    env = {
        **e2e_env,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_JOB_CREDENTIALS": "refuse",
        "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID": stripe_sim.client_id,
    }
    name = f"intake-{uuid.uuid4().hex[:6]}"
    worker = harness.start_worker(env, log_dir, f"{name}-worker")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [sys.executable, "-m", "worker.cli", "ingest", "--host", "127.0.0.1"]
    ingest = Process(f"{name}-ingest", [*args, "--port", str(port)], env, log_dir)
    client = redis.Redis.from_url(broker)
    try:
        up = answers(f"{url}/healthz", 30, alive=ingest.alive, accept=lambda s: s == 200)
        assert up, f"ingest did not answer /healthz:\n{ingest.output()[-3000:]}"
        yield Running(url, client, broker, [worker, ingest])
    finally:
        for process in (ingest, worker):
            process.stop()
        client.close()
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with store.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


def backend_meta(running: Running, job_id: str) -> dict[str, Any]:
    """What the result backend holds for the job (AssertionError until it holds something)."""
    meta = running.broker.get(f"celery-task-meta-{job_id}")
    assert meta is not None
    found = json.loads(meta)
    assert isinstance(found, dict)
    return found


def schema_errors(name: str, instance: Any) -> list[str]:
    found = json.loads((SCHEMAS / f"{name}.json").read_text())
    return [e.message for e in jsonschema_rs.validator_for(found).iter_errors(instance)]


# -- every task -----------------------------------------------------------------------------------


def test_every_task_through_the_intake_on_a_real_worker(
    running: Running, stripe_sim: StripeSimulator, store: Database
) -> None:
    org_id = org()
    _, key = stripe_sim.add_account("Intake AB")
    common = {"org_id": org_id, "actor": ADMIN}
    sent: list[str] = []

    def run(task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        job_id = running.submit(task, kwargs, request_id=f"{org_id}-{task}")
        result = running.result(org_id, job_id)
        assert (result["status"], result["job_id"]) == ("succeeded", job_id), result
        assert schema_errors("result", result) == []
        # The same result is the Celery task's, in the result backend (stored just after).
        meta = harness.eventually(lambda: backend_meta(running, job_id))
        assert (meta["status"], meta["result"]) == ("SUCCESS", result)
        sent.append(task)
        return result

    credentials = {"api_key": key}
    added = run(
        "accounts.add", {**common, "type": "stripe", "name": "Main", "credentials": credentials}
    )
    account_id = added["account"]["id"]
    link = {"org_id": org_id, "integration_id": "wf-1", "account_id": account_id}
    run("accounts.update", {**common, "account_id": account_id, "name": "Renamed"})
    run("accounts.check", {"account_id": account_id})
    run("integrations.link", {**link, "name": "Invoice sync"})
    run("integrations.unlink", link)
    removed = run("accounts.remove", {**common, "account_id": account_id})

    assert sorted(sent) == sorted(JOBS)
    assert removed["account"]["status"] == "removed"
    with store.unit_of_work() as s:
        assert s.scalar(select(func.count()).where(Account.org_id == org_id)) == 0


# -- no credential in the clear, in Redis or in a log ---------------------------------------------


def texts(value: bytes | str, depth: int = 0) -> Iterator[str]:
    """`value` as text, and what is inside it: every string of it as JSON, and every string that
    is base64 (a kombu message's body), decoded, to a few levels."""
    as_text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    yield as_text
    if depth > 3:
        return
    try:
        parsed = json.loads(as_text)
    except ValueError:
        parsed = None
    strings = list(_strings(parsed)) if parsed is not None else [as_text]
    for string in strings:
        if string != as_text:
            yield from texts(string, depth + 1)
        if len(string) >= 8 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", string):
            try:
                decoded = base64.b64decode(string + "=" * (-len(string) % 4), validate=False)
            except (binascii.Error, ValueError):
                continue
            yield from texts(decoded, depth + 1)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, item in node.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def redis_contents(client: redis.Redis) -> dict[str, list[str]]:
    """Every key of the database and everything it holds (lists, hashes, strings, sets, sorted
    sets, streams), as text with what is encoded inside decoded."""
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"string":
            values = [client.get(key) or b""]
        elif kind == b"list":
            values = client.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == b"set":
            values = list(client.smembers(key))
        elif kind == b"zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            entries = client.xrange(key)
            values = [f for _, fields in entries for pair in fields.items() for f in pair]
        found[key.decode()] = [t for v in [key, *values] for t in texts(v)]
    return found


def holding(contents: dict[str, list[str]], secret: str) -> list[str]:
    return [key for key, values in contents.items() if any(secret in v for v in values)]


@contextmanager
def provider_held(sim: StripeSimulator) -> Iterator[threading.Event]:
    """Every request to the simulator waits (once recorded) until the event is set, so a job
    that calls it stays in flight, its message held unacknowledged by the worker."""
    release = threading.Event()
    original = sim.script.intercept

    async def held(request: Any) -> Any:
        await asyncio.to_thread(release.wait, 30)
        return await original(request)

    sim.script.intercept = held  # type: ignore[method-assign]
    try:
        yield release
    finally:
        release.set()
        del sim.script.intercept


def test_the_scan_finds_a_plaintext_credential_in_a_queued_message(running: Running) -> None:
    """The check below can fail: a message sent the plain way, on a queue no one consumes, is
    found by the same scan (its kwargs are base64 in the body, and repr'd in a header)."""
    secret = "sk_test_" + uuid.uuid4().hex
    control = harness.client_app(running.broker_url, running.broker_url)
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    control.send_task("accounts.add", kwargs={"credentials": {"api_key": secret}}, queue=queue)
    try:
        assert queue in holding(redis_contents(running.broker), secret)
    finally:
        running.broker.delete(queue)


@pytest.mark.parametrize("form", ["api_key", "code"])
def test_credentials_through_the_intake_are_never_in_redis_nor_in_a_log(
    form: str, running: Running, stripe_sim: StripeSimulator
) -> None:
    org_id = org()
    connected, key = stripe_sim.add_account("Sealed AB")
    secret = key if form == "api_key" else stripe_sim.issue_code(connected)
    kwargs = {"org_id": org_id, "actor": ADMIN, "type": "stripe", "name": "Sealed"}

    with provider_held(stripe_sim) as release:
        calls = len(stripe_sim.calls)
        job_id = running.submit("accounts.add", {**kwargs, "credentials": {form: secret}})
        harness.eventually(lambda: _assert(len(stripe_sim.calls) > calls), timeout=60)
        during = redis_contents(running.broker)  # the worker is in the middle of the job
        release.set()
    result = running.result(org_id, job_id)
    after = redis_contents(running.broker)

    assert result["status"] == "succeeded", result
    assert holding(during, job_id), "the scan did not see the job in flight"
    assert holding(during, secret) == []
    assert holding(after, f"celery-task-meta-{job_id}"), "the scan did not see the result"
    assert holding(after, secret) == []
    assert secret not in running.logs()
    assert secret not in json.dumps(result)


def _assert(condition: bool) -> None:
    assert condition


# -- JOB_CREDENTIALS=refuse on the real worker ----------------------------------------------------


def test_plaintext_credentials_over_celery_are_refused_by_the_worker(
    running: Running, stripe_sim: StripeSimulator, store: Database
) -> None:
    org_id = org()
    _, key = stripe_sim.add_account("Plain AB")
    client = harness.client_app(running.broker_url, running.broker_url)
    kwargs = {"org_id": org_id, "actor": ADMIN, "type": "stripe", "name": "Plain"}

    sent = client.send_task("accounts.add", kwargs={**kwargs, "credentials": {"api_key": key}})
    result = sent.get(timeout=60)

    assert sent.state == "SUCCESS"  # a job that ran is a Celery success, whatever it decided
    assert (result["status"], result["reason"]) == ("rejected", "invalid")
    assert result["fields"] == {"credentials": PLAINTEXT_REFUSED}
    assert key not in json.dumps(result)
    with store.unit_of_work() as s:
        assert s.scalar(select(func.count()).where(Account.org_id == org_id)) == 0


# -- the envelope of docs/jobs.md, by hand ---------------------------------------------------------


def documented_envelope() -> dict[str, Any]:
    found = re.search(r"<!-- example: envelope -->\s*```json\n(.*?)```", GUIDE.read_text(), re.S)
    assert found is not None
    envelope = json.loads(found.group(1))
    assert isinstance(envelope, dict)
    return envelope


def test_the_documented_envelope_pushed_by_hand_runs(
    running: Running, stripe_sim: StripeSimulator
) -> None:
    org_id = org()
    _, key = stripe_sim.add_account("Envelope AB")
    added = running.run(
        "accounts.add",
        {
            "org_id": org_id,
            "actor": ADMIN,
            "type": "stripe",
            "name": "E",
            "credentials": {"api_key": key},
        },
        org_id,
    )
    envelope = documented_envelope()
    _, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    kwargs.update(org_id=org_id, account_id=added["account"]["id"], request_id=org())
    job_id = str(uuid.uuid4())
    envelope["body"] = base64.b64encode(json.dumps([[], kwargs, embed]).encode()).decode()
    envelope["headers"].update(id=job_id, root_id=job_id)
    envelope["properties"].update(correlation_id=job_id, delivery_tag=str(uuid.uuid4()))
    queue = envelope["properties"]["delivery_info"]["routing_key"]

    running.broker.lpush(queue, json.dumps(envelope))

    meta = harness.eventually(lambda: backend_meta(running, job_id), timeout=60)
    assert meta["status"] == "SUCCESS"
    assert (meta["result"]["status"], meta["result"]["job_id"]) == ("succeeded", job_id)
    assert meta["result"]["integration_id"] == kwargs["integration_id"]
    assert running.result(org_id, job_id) == meta["result"]
