"""The internal read API: token, actor headers, role rules and organization boundaries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from tests.integration.jobs import add, link
from tests.simulators.stripe import StripeSimulator
from worker.api.app import create_app
from worker.service.deps import Deps
from worker.settings import Settings

TOKEN = "read-api-token-for-tests"


@pytest.fixture
def api(deps: Deps) -> Iterator[TestClient]:
    settings = Settings(service_token=SecretStr(TOKEN))
    with TestClient(create_app(settings, deps)) as client:
        yield client


def headers(role: str | None = "admin", token: str = TOKEN) -> dict[str, str]:
    out = {"Authorization": f"Bearer {token}", "X-Actor-Id": "u-1"}
    if role is not None:
        out["X-Actor-Role"] = role
    return out


@pytest.fixture
def account_id(deps: Deps, stripe_sim: StripeSimulator) -> str:
    _, key = stripe_sim.add_account("Read AB")
    account = add(deps, credentials={"api_key": key})["account"]["id"]
    link(deps, integration_id="wf-1", account_id=account, name="Bookkeeping")
    return str(account)


def test_every_role_lists_but_only_admin_and_collaborator_open_details(
    api: TestClient, account_id: str
) -> None:
    for role in ("admin", "collaborator", "reader"):
        listed = api.get("/api/v1/orgs/org-1/accounts", headers=headers(role))
        assert listed.status_code == 200
        assert [a["id"] for a in listed.json()["accounts"]] == [account_id]
        assert set(listed.json()["accounts"][0]) == {
            "id",
            "org_id",
            "name",
            "type",
            "status",
            "created_at",
            "updated_at",
        }
        opened = api.get(f"/api/v1/orgs/org-1/accounts/{account_id}", headers=headers(role))
        assert opened.status_code == (403 if role == "reader" else 200)


def test_details_have_the_contract_shape(api: TestClient, account_id: str) -> None:
    body = api.get(f"/api/v1/orgs/org-1/accounts/{account_id}", headers=headers()).json()
    assert body["integrations"] == [{"id": "wf-1", "name": "Bookkeeping"}]
    assert body["errors"] == []
    assert body["status_history"][0]["to"] == "connected"
    assert body["status_history"][0]["actor"] == {"user_id": "u-admin", "role": "admin"}
    assert body["created_at"].endswith("+00:00")
    for key in ("connection", "metadata", "last_checked_at"):
        assert key in body


def test_other_organizations_and_unknown_ids_are_404(api: TestClient, account_id: str) -> None:
    assert (
        api.get(f"/api/v1/orgs/org-2/accounts/{account_id}", headers=headers()).status_code == 404
    )
    assert api.get("/api/v1/orgs/org-1/accounts/not-a-uuid", headers=headers()).status_code == 404
    assert api.get("/api/v1/orgs/org-2/accounts", headers=headers()).json() == {"accounts": []}


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_without_a_valid_token_401(api: TestClient, token: str) -> None:
    assert api.get("/api/v1/orgs/org-1/accounts", headers=headers(token=token)).status_code == 401
    assert api.get("/api/v1/orgs/org-1/accounts").status_code == 401


@pytest.mark.parametrize("role", [None, "owner", ""])
def test_missing_or_unknown_role_400(api: TestClient, role: str | None) -> None:
    response = api.get("/api/v1/orgs/org-1/accounts", headers=headers(role))
    assert response.status_code == 400


def test_no_token_configured_means_no_read_api(deps: Deps) -> None:
    with TestClient(create_app(Settings(service_token=None), deps)) as client:
        assert client.get("/api/v1/orgs/org-1/accounts", headers=headers()).status_code == 401


def test_job_results_are_readable(api: TestClient, deps: Deps, stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account()
    result = add(deps, credentials={"api_key": key}, request_id="r-read")
    response = api.get(f"/api/v1/jobs/{result['job_id']}", headers=headers("reader"))
    assert response.status_code == 200
    assert response.json() == result
    assert api.get("/api/v1/jobs/nope", headers=headers()).status_code == 404


def test_health_endpoints(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/metrics").status_code == 200
