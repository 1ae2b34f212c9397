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


def add_account(client: Celery, stripe_sim: StripeSimulator, org: str = "org-e2e") -> str:
    _, key = stripe_sim.add_account()
    result = send_and_wait(
        client,
        "accounts.add",
        {
            "org_id": org,
            "actor": ADMIN,
            "type": "stripe",
            "name": "Main",
            "credentials": {"api_key": key},
        },
    )
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"])


def test_remove_while_linked_then_unlink_and_remove(
    db: Database, stripe_sim: StripeSimulator, worker_process: Process, client: Celery
) -> None:
    account_id = add_account(client, stripe_sim)
    linked = send_and_wait(
        client,
        "integrations.link",
        {"org_id": "org-e2e", "integration_id": "wf-7", "account_id": account_id, "name": "Orders"},
    )
    assert linked["status"] == "succeeded", linked
    refused = send_and_wait(
        client, "accounts.remove", {"org_id": "org-e2e", "actor": ADMIN, "account_id": account_id}
    )
    assert (refused["status"], refused["reason"]) == ("rejected", "in_use")
    assert refused["integrations"] == [{"id": "wf-7", "name": "Orders"}]
    forbidden = send_and_wait(
        client, "accounts.remove", {"org_id": "org-e2e", "actor": READER, "account_id": account_id}
    )
    assert forbidden["reason"] == "forbidden"
    elsewhere = send_and_wait(
        client, "accounts.remove", {"org_id": "org-other", "actor": ADMIN, "account_id": account_id}
    )
    assert elsewhere["reason"] == "not_found"
    unlinked = send_and_wait(
        client,
        "integrations.unlink",
        {"org_id": "org-e2e", "integration_id": "wf-7", "account_id": account_id},
    )
    assert unlinked["status"] == "succeeded"
    removed = send_and_wait(
        client,
        "accounts.remove",
        {"org_id": "org-e2e", "actor": ADMIN, "account_id": account_id, "request_id": "rm-1"},
    )
    assert removed["status"] == "succeeded", removed
    again = send_and_wait(
        client,
        "accounts.remove",
        {"org_id": "org-e2e", "actor": ADMIN, "account_id": account_id, "request_id": "rm-1"},
    )
    assert again == removed


def test_fifty_concurrent_remove_and_link_jobs_through_the_worker(
    db: Database, stripe_sim: StripeSimulator, worker_process: Process, client: Celery
) -> None:
    account_id = add_account(client, stripe_sim)
    sent = []
    for i in range(25):
        sent.append(
            (
                "link",
                client.send_task(
                    "integrations.link",
                    kwargs={
                        "org_id": "org-e2e",
                        "integration_id": f"wf-{i}",
                        "account_id": account_id,
                        "name": f"Flow {i}",
                    },
                ),
            )
        )
        sent.append(
            (
                "remove",
                client.send_task(
                    "accounts.remove",
                    kwargs={
                        "org_id": "org-e2e",
                        "actor": ADMIN,
                        "account_id": account_id,
                    },
                ),
            )
        )
    results = [(kind, r.get(timeout=120)) for kind, r in sent]
    removed = [r for k, r in results if k == "remove" and r["status"] == "succeeded"]
    linked = [r for k, r in results if k == "link" and r["status"] == "succeeded"]
    assert not (removed and linked), "an account was removed while an integration used it"
    assert len(removed) <= 1
    with db.engine.connect() as conn:
        from sqlalchemy import text

        exists = conn.execute(
            text("SELECT count(*) FROM accounts WHERE id = :id"), {"id": account_id}
        ).scalar_one()
        refs = conn.execute(
            text("SELECT count(*) FROM integration_refs WHERE account_id = :id"), {"id": account_id}
        ).scalar_one()
    assert exists == (0 if removed else 1)
    assert refs == len(linked)
