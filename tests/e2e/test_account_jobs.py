"""Another service sends jobs over the real broker to a real worker process, and reads back."""

from __future__ import annotations

import httpx
from celery import Celery

from models import Database
from tests.e2e.conftest import SERVICE_TOKEN
from tests.e2e.harness import Process, send_and_wait
from tests.simulators.stripe import StripeSimulator

ADMIN = {"user_id": "u-admin", "role": "admin"}
READER = {"user_id": "u-reader", "role": "reader"}


def read(url: str, path: str, role: str = "admin") -> httpx.Response:
    headers = {
        "Authorization": f"Bearer {SERVICE_TOKEN}",
        "X-Actor-Id": "u-1",
        "X-Actor-Role": role,
    }
    return httpx.get(f"{url}{path}", headers=headers, timeout=10)


def test_add_stripe_account_then_read_it_back(
    db: Database,
    stripe_sim: StripeSimulator,
    worker_process: Process,
    ingest_server: str,
    client: Celery,
) -> None:
    _, key = stripe_sim.add_account("E2E Shop AB")
    result = send_and_wait(
        client,
        "accounts.add",
        {
            "org_id": "org-e2e",
            "actor": ADMIN,
            "type": "stripe",
            "name": "Payments",
            "credentials": {"api_key": key},
            "request_id": "e2e-add-1",
        },
    )
    assert result["status"] == "succeeded", result
    account = result["account"]
    assert account["status"] == "connected"

    listed = read(ingest_server, "/api/v1/orgs/org-e2e/accounts", role="reader")
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["accounts"]] == [account["id"]]

    details = read(ingest_server, f"/api/v1/orgs/org-e2e/accounts/{account['id']}")
    assert details.status_code == 200
    body = details.json()
    assert body["metadata"]["business_name"] == "E2E Shop AB"
    assert body["connection"] == {"mode": "api_key", "key_last4": key[-4:]}
    assert body["status_history"][0]["to"] == "connected"

    assert (
        read(ingest_server, f"/api/v1/orgs/org-e2e/accounts/{account['id']}", "reader").status_code
        == 403
    )
    assert read(ingest_server, f"/api/v1/orgs/other/accounts/{account['id']}").status_code == 404

    job = read(ingest_server, f"/api/v1/jobs/{result['job_id']}")
    assert job.status_code == 200
    assert job.json() == result

    # The secret is nowhere: not in the result, the API answers, or the worker's log.
    for text in (str(result), details.text, listed.text, job.text, worker_process.output()):
        assert key not in text
