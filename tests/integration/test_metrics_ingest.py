"""`connections ingest --workers 2` as a real process on the run's PostgreSQL: whichever of its
processes answers a scrape, every count is the same and is all of them; its metrics directory
is its own, and gone when it stops."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import Process, answers, free_port
from tests.fixtures.ingest import STRIPE_SECRETS, stripe_delivery, stripe_event
from worker.observe.group import PREFIX

WEBHOOKS = 40


@contextmanager
def running_ingest(database_url: str, encryption_key: str, tmp_path: Path) -> Iterator[str]:
    """The ingest with two processes, its temporary files under `tmp_path / "tmp"`."""
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        {
            "CONNECTIONS_DATABASE_URL": database_url,
            # A broker of its own: the ids queued after commit go nowhere that matters here.
            "CONNECTIONS_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
            "CONNECTIONS_RESULT_BACKEND": f"db+sqlite:///{tmp_path / 'results.db'}",
            "CONNECTIONS_ENCRYPTION_KEYS": encryption_key,
            "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRETS[0],
            "CONNECTIONS_LOG_FORMAT": "json",
            "CONNECTIONS_VAR_DIR": str(tmp_path / "var"),
            "TMPDIR": str(tmp_path / "tmp"),
        }
    )
    (tmp_path / "tmp").mkdir(exist_ok=True)
    port = free_port()
    args = [sys.executable, "-m", "worker.cli", "ingest", "--port", str(port), "--workers", "2"]
    process = Process("ingest", args, env, tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers(f"{url}/healthz", 60, alive=process.alive, accept=lambda s: s == 200):
            raise AssertionError(f"the ingest did not start:\n{process.output()[-3000:]}")
        yield url
    finally:
        process.stop()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


ACCEPTED = ("connections_webhooks_total", (("answer", "accepted"), ("provider", "stripe")))
REFUSED = ("connections_webhooks_total", (("answer", "refused"), ("provider", "stripe")))


def test_every_scrape_of_a_two_process_ingest_counts_every_request(
    database_url: str, encryption_key: str, tmp_path: Path
) -> None:
    with running_ingest(database_url, encryption_key, tmp_path) as url:
        [group] = list((tmp_path / "tmp").glob(f"{PREFIX}ingest-*"))
        for _ in range(WEBHOOKS):
            body, headers = stripe_delivery(stripe_event("customer.created"))
            # A connection each, so the kernel hands them to both processes.
            answer = httpx.post(f"{url}/webhooks/stripe", content=body, headers=headers, timeout=10)
            assert answer.status_code == 200, answer.text
        forged, _ = stripe_delivery(stripe_event("customer.created"))
        answer = httpx.post(f"{url}/webhooks/stripe", content=forged, headers=headers, timeout=10)
        assert answer.status_code == 401

        scrapes = [scrape(url) for _ in range(6)]

        assert [s[ACCEPTED] for s in scrapes] == [WEBHOOKS] * 6
        assert [s[REFUSED] for s in scrapes] == [1] * 6
        # Both processes keep their values in the group's directory (files `<kind>_<pid>.db`).
        assert len({p.stem.rsplit("_", 1)[1] for p in group.glob("*.db")}) == 2
    assert not group.exists()  # removed when the ingest stopped
