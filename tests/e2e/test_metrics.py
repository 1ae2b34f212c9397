"""A real Prometheus (Debian's `prometheus`) scrapes the real processes, an ingest, a prefork
Celery worker and beat, as deploy/prometheus/prometheus.yml has it but every second, with the
rules of deploy/prometheus/alerts.yml (their `for:` cut to 0 s): after a job, a webhook, its
event and a scheduled check, every family those processes serve has samples; an open provider
incident fires its alert, and a worker that stops fires WorkerDown."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import update

from bench.processes import Process, answers, celery_command, free_port, stop_all
from models import Account, Database, ProviderIncident, utc_now
from tests.e2e import harness
from tests.fixtures.ingest import STRIPE_SECRETS, stripe_delivery, stripe_event
from tests.simulators.stripe import StripeSimulator

MISSING = (
    "the prometheus binary is not installed (Debian's `prometheus` package; scripts/test "
    "installs it, and CI requires it)"
)


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    if shutil.which("prometheus") is not None:
        return
    if os.environ.get("CONNECTIONS_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(MISSING)
    pytest.skip(MISSING)


ROOT = Path(__file__).resolve().parents[2]
ADMIN = {"user_id": "u-admin", "role": "admin"}
# What the ingest, the worker and beat serve, once driven (the Fortnox listener, and so the
# stream gauge and refreshes, are not run here). Histograms by their `_count`.
FAMILIES = {
    "connections_checks_total",
    "connections_check_seconds_count",
    "connections_accounts",
    "connections_incidents_open",
    "connections_webhooks_total",
    "connections_inbox_pending",
    "connections_inbox_oldest_pending_seconds",
    "connections_events_processed_total",
    "connections_outbox_unpublished",
    "connections_outbox_oldest_unpublished_seconds",
    "connections_jobs_total",
    "connections_job_seconds_count",
}


@pytest.fixture
def own_redis() -> Iterator[int]:
    number = harness.allocate_redis_db()
    yield number
    harness.release_redis_db(number)


@pytest.fixture
def env(e2e_env: dict[str, str], own_redis: int) -> dict[str, str]:
    broker = harness.redis_url(own_redis)
    return {
        **{k: v for k, v in e2e_env.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        "CONNECTIONS_BROKER_URL": broker,
        "CONNECTIONS_RESULT_BACKEND": broker,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRETS[0],
        "CONNECTIONS_CHECK_INTERVAL_SECONDS": "10",
    }


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    stop_all(p for p in started if p.alive())


def prometheus_config(tmp_path: Path, targets: dict[str, str]) -> Path:
    """The deploy config's jobs at these addresses, every second; the deploy rules, at once."""
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_prometheus(tmp_path: Path, config: Path) -> tuple[Process, str]:
    port = free_port()
    args = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process = Process("prometheus", args, dict(os.environ), tmp_path)
    url = f"http://127.0.0.1:{port}"
    if not answers(f"{url}/-/ready", 30, alive=process.alive, accept=lambda s: s == 200):
        raise AssertionError(f"prometheus did not start:\n{process.output()[-3000:]}")
    return process, url


def api(url: str, path: str, **params: str) -> Any:
    answer = httpx.get(f"{url}/api/v1/{path}", params=params, timeout=5)
    answer.raise_for_status()
    return answer.json()["data"]


def names(url: str) -> set[str]:
    return {n for n in api(url, "label/__name__/values") if n.startswith("connections_")}


def firing(url: str) -> list[dict[str, str]]:
    return [a["labels"] for a in api(url, "alerts")["alerts"] if a["state"] == "firing"]


def test_prometheus_sees_every_family_and_fires_alerts_when_their_condition_holds(
    db: Database,
    env: dict[str, str],
    log_dir: Path,
    tmp_path: Path,
    stripe_sim: StripeSimulator,
    processes: list[Process],
) -> None:
    # Open before beat starts, so its first reading of the database's state has it.
    with db.unit_of_work() as session:
        session.add(ProviderIncident(provider="shopify", reason="e2e outage", started_at=utc_now()))
    ports = {"worker": free_port(), "beat": free_port()}
    tag = uuid.uuid4().hex[:6]
    worker = Process(
        f"metrics-worker-{tag}",
        celery_command(
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",  # prefork: the children count, the parent serves
            f"--hostname=metrics-{tag}@%h",
            "--without-gossip",
            "--without-mingle",
        ),
        {**env, "CONNECTIONS_METRICS_PORT": str(ports["worker"])},
        log_dir,
    )
    processes.append(worker)
    beat = Process(
        f"metrics-beat-{tag}",
        celery_command("beat", "--loglevel=INFO", "--schedule", str(tmp_path / "beat-schedule")),
        {**env, "CONNECTIONS_METRICS_PORT": str(ports["beat"])},
        log_dir,
    )
    processes.append(beat)
    ingest, ingest_url = harness.start_ingest(env, log_dir, f"metrics-ingest-{tag}")
    processes.append(ingest)
    targets = {
        "ingest": ingest_url.removeprefix("http://"),
        "worker": f"127.0.0.1:{ports['worker']}",
        "beat": f"127.0.0.1:{ports['beat']}",
    }
    prometheus, url = start_prometheus(tmp_path, prometheus_config(tmp_path, targets))
    processes.append(prometheus)

    def worker_ready() -> None:
        assert worker.alive(), worker.output()[-3000:]
        assert "ready." in worker.output()

    harness.eventually(worker_ready, timeout=60)

    # A job, a webhook (and so an event processed), and a scheduled check.
    client = harness.client_app(env["CONNECTIONS_BROKER_URL"], env["CONNECTIONS_RESULT_BACKEND"])
    _, key = stripe_sim.add_account("Metrics AB")
    added = harness.send_and_wait(
        client,
        "accounts.add",
        {
            "org_id": "org-metrics",
            "actor": ADMIN,
            "type": "stripe",
            "name": "Payments",
            "credentials": {"api_key": key},
        },
    )
    assert added["status"] == "succeeded", added
    with db.unit_of_work() as session:
        session.execute(update(Account).values(next_check_at=utc_now() - timedelta(seconds=1)))
    body, headers = stripe_delivery(stripe_event("customer.created"))
    answer = httpx.post(f"{ingest_url}/webhooks/stripe", content=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text

    def every_family_and_target_up() -> None:
        assert FAMILIES <= names(url), FAMILIES - names(url)
        up = {r["metric"]["job"]: r["value"][1] for r in api(url, "query", query="up")["result"]}
        assert up == {"ingest": "1", "worker": "1", "beat": "1"}

    harness.eventually(every_family_and_target_up, timeout=45)
    for query in (
        'connections_jobs_total{job="worker", task="accounts.add", status="succeeded"}',
        'connections_checks_total{job="worker", provider="stripe", outcome="passed"}',
        'connections_events_processed_total{job="worker", provider="stripe"}',
        'connections_webhooks_total{job="ingest", provider="stripe", answer="accepted"}',
    ):
        [sample] = api(url, "query", query=query)["result"]
        assert float(sample["value"][1]) >= 1, query

    def incident_alert() -> None:
        alerts = firing(url)
        assert {
            "alertname": "ProviderIncidentOpen",
            "provider": "shopify",
            "severity": "warning",
        } in [{k: a[k] for k in ("alertname", "provider", "severity") if k in a} for a in alerts]
        assert "WorkerDown" not in {a["alertname"] for a in alerts}

    harness.eventually(incident_alert, timeout=15)

    worker.stop()

    def worker_down() -> None:
        down = [a for a in firing(url) if a["alertname"] == "WorkerDown"]
        assert [(a["job"], a["instance"]) for a in down] == [("worker", targets["worker"])]

    harness.eventually(worker_down, timeout=15)
