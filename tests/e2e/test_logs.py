"""The logs of real processes with LOG_FORMAT=json: the ingest (two server processes), a prefork
worker and beat, driven by jobs with credentials, OAuth codes, webhooks and refused messages.
Every line each process writes, on stdout or stderr, is one JSON object, and none holds a secret
the test gave them."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest
from celery import Celery
from cryptography.fernet import Fernet

from bench.processes import Process, answers, celery_command, free_port, stop_all
from models.migrate import upgrade
from tests import services
from tests.e2e import harness
from tests.fixtures.ingest import shopify_delivery, stripe_delivery, stripe_event
from tests.simulators.stripe import StripeSimulator

WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
CLIENT_SECRETS = {
    "CONNECTIONS_SHOPIFY_CLIENT_SECRET": "shopify-client-" + secrets.token_hex(8),
    "CONNECTIONS_HUBSPOT_CLIENT_SECRET": "hubspot-client-" + secrets.token_hex(8),
    "CONNECTIONS_FORTNOX_CLIENT_SECRET": "fortnox-client-" + secrets.token_hex(8),
}
SHOP = CLIENT_SECRETS["CONNECTIONS_SHOPIFY_CLIENT_SECRET"]
SERVICE_TOKEN = "logs-service-token-" + secrets.token_hex(8)
ADMIN = {"user_id": "u-logs", "role": "admin"}


@pytest.fixture(scope="module")
def own_services() -> Iterator[tuple[str, int]]:
    """A database and a Redis database of its own: this test's beat claims due checks, which
    must not be other tests' accounts."""
    url = services.create_database()
    upgrade(url)
    number = harness.allocate_redis_db()
    yield url, number
    harness.release_redis_db(number)
    services.drop_database(url)


@pytest.fixture(scope="module")
def env(
    e2e_env: dict[str, str], own_services: tuple[str, int], stripe_sim: StripeSimulator
) -> dict[str, str]:
    database, number = own_services
    broker = harness.redis_url(number)
    return {
        **e2e_env,
        "CONNECTIONS_DATABASE_URL": database,
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "CONNECTIONS_SERVICE_TOKEN": SERVICE_TOKEN,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID": stripe_sim.client_id,
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "INFO",
        **CLIENT_SECRETS,
    }


@pytest.fixture(scope="module")
def started(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Ingest, worker and beat, started together; each with its own metrics port."""
    log_dir = tmp_path_factory.mktemp("json-logs")
    port = free_port()

    def run(name: str, args: list[str]) -> Process:
        return Process(name, args, {**env, "CONNECTIONS_METRICS_PORT": str(free_port())}, log_dir)

    ingest_args = ["-m", "worker.cli", "ingest", "--port", str(port), "--workers", "2"]
    processes = {
        "ingest": run("ingest", [sys.executable, *ingest_args]),
        "worker": run(
            "worker",
            celery_command(
                "worker",
                "--loglevel=INFO",
                "--concurrency=2",
                f"--hostname=logs-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
            ),
        ),
        "beat": run("beat", celery_command("beat", "--schedule", str(log_dir / "beat-schedule"))),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        ingest = processes["ingest"]
        assert answers(f"{url}/healthz", 60, alive=ingest.alive, accept=lambda s: s == 200), (
            ingest.output()[-3000:]
        )
        for name, ready in (("worker", "ready."), ("beat", "beat: Starting")):
            harness.eventually(partial(_written, processes[name], ready), timeout=60)
        yield url, processes
    finally:
        stop_all(processes.values())


def _written(process: Process, text: str) -> None:
    assert process.alive(), process.output()[-3000:]
    assert text in process.output()


def add(client: Celery, credentials: dict[str, str], request_id: str) -> dict[str, Any]:
    kwargs = {
        "org_id": "org-logs",
        "actor": ADMIN,
        "type": "stripe",
        "name": "Payments",
        "credentials": credentials,
        "request_id": request_id,
    }
    return harness.send_and_wait(client, "accounts.add", kwargs)


def test_every_line_is_json_and_no_secret_is_in_any(
    env: dict[str, str], started: Any, stripe_sim: StripeSimulator
) -> None:
    url, processes = started
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    account_id, key = stripe_sim.add_account("Logs AB")
    codes = [stripe_sim.issue_code(stripe_sim.add_account("Connect AB")[0]) for _ in range(2)]
    unknown_key = "sk_test_" + secrets.token_hex(12)
    unregistered_code = "ac_" + secrets.token_hex(12)
    given = [key, *codes, unknown_key, unregistered_code, WEBHOOK_SECRET, SERVICE_TOKEN]
    given += [*CLIENT_SECRETS.values(), env["CONNECTIONS_ENCRYPTION_KEYS"]]

    # Jobs: an API key, an OAuth code (used twice: single use, so the second is refused), a key
    # the provider does not know.
    assert add(client, {"api_key": key}, "logs-1")["status"] == "succeeded"
    assert add(client, {"code": codes[0]}, "logs-2")["status"] == "succeeded"
    assert add(client, {"code": codes[0]}, "logs-3")["status"] == "rejected"
    assert add(client, {"api_key": unknown_key}, "logs-4")["status"] == "rejected"

    # Webhooks: signed with the configured secrets, and one with a wrong signature.
    for path, (body, headers) in (
        ("stripe", stripe_delivery(stripe_event("account.updated", account=account_id))),
        ("stripe", stripe_delivery(stripe_event("account.updated"), secret="whsec_wrong0000")),
        ("shopify", shopify_delivery({"id": 1}, "shop/update", "logs.myshopify.com", secret=SHOP)),
    ):
        httpx.post(f"{url}/webhooks/{path}", content=body, headers=headers, timeout=10)

    # Refused messages: a pickled job (its body and headers hold a key and a code), and a job
    # whose task no worker has.
    pickled = {"org_id": "org-logs", "credentials": {"api_key": key, "code": codes[1]}}
    client.send_task("accounts.add", kwargs=pickled, serializer="pickle")
    client.send_task("accounts.nope", kwargs={"credentials": {"code": unregistered_code}})

    worker = processes["worker"]
    harness.eventually(lambda: _written(worker, "untrusted content of type pickle"), timeout=30)
    harness.eventually(lambda: _written(worker, "Received unregistered task"), timeout=30)
    harness.eventually(lambda: _written(worker, "Task events.process["), timeout=30)
    stop_all(processes.values())  # shutdown lines are lines too

    logs = {name: process.output() for name, process in processes.items()}
    parsed: dict[str, list[dict[str, Any]]] = {}
    for name, text in logs.items():
        parsed[name] = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert all(isinstance(line, dict) for line in parsed[name]), name
        for secret in given:
            assert secret not in text, (name, secret)

    # The refusals keep their reason.
    refused = sorted(e["event"] for e in parsed["worker"] if "not logged" in e["event"])
    assert len(refused) == 2, refused
    assert refused[0].startswith("Received invalid task message: Refusing to deserialize")
    assert "untrusted content of type pickle" in refused[0]
    assert refused[1].startswith("Received unregistered task of type 'accounts.nope'")

    finished = [line for line in parsed["worker"] if line["event"] == "job_finished"]
    assert len(finished) == 4
    assert {(line["task_id"] == line["job_id"], line["org_id"]) for line in finished} == {
        (True, "org-logs")
    }

    # Routine ticks are debug: beat's sends and the idle relay's runs are not in the INFO log.
    assert "beat: Starting..." in [line["event"] for line in parsed["beat"]]
    assert not [line for line in parsed["beat"] if "Sending due task" in line["event"]]
    assert not [line for line in parsed["worker"] if "events.relay[" in line["event"]]
    assert any("Application startup complete" in line["event"] for line in parsed["ingest"])
    assert any(line["event"] == "worker: Warm shutdown (MainProcess)" for line in parsed["worker"])
