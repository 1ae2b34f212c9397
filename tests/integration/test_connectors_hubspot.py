"""HubSpot against its simulator and the real PostgreSQL, through the service layer: adding with an
OAuth code, the failures a check can get, the refresh ahead of expiry and on a rejected token
(once under concurrent checks), the uninstall seen through `invalid_grant`, and the per-portal
limit kept before HubSpot has to answer 429."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from connectors import Connectors, ConnectorSettings
from connectors.http import HttpLayer
from connectors.hubspot import HubSpotConnector, HubSpotFields
from models import Account, StatusChange
from tests.conftest import FAST_RETRY
from tests.fixtures.connectors import (
    assert_fails_then_recovers,
    assert_slow_answers_time_out,
    stored,
)
from tests.fixtures.hubspot import sim_settings
from tests.integration import jobs
from tests.simulators.base import Answer
from tests.simulators.hubspot import (
    DETAILS_PATH,
    TOKEN_PATH,
    HubSpotSimulator,
    Portal,
    approve_link,
)
from worker.service.deps import Deps

REDIRECT = "https://app.standout.test/connect/hubspot/callback"


def added(deps: Deps, sim: HubSpotSimulator, add_account: Any, **portal: Any) -> tuple[str, Portal]:
    tenant = sim.add_portal(**portal)
    result = add_account(
        deps, "hubspot", {"code": sim.issue_code(tenant, REDIRECT), "redirect_uri": REDIRECT}
    )
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"]), tenant


def expire_stored_token(deps: Deps, sim: HubSpotSimulator, account_id: str) -> dict[str, Any]:
    """Make the account's access token expired, for us and for HubSpot alike."""
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        credentials = deps.vault.decrypt(account.credentials)
        past = datetime.now(UTC) - timedelta(minutes=1)
        credentials["expires_at"] = past.isoformat()
        account.credentials = deps.vault.encrypt(credentials)
        account.credentials_expire_at = past
    sim.expire_access_token(credentials["access_token"])
    return credentials


def credentials_of(deps: Deps, account_id: str) -> dict[str, Any]:
    return deps.vault.decrypt(stored(deps, account_id)[0].credentials)


# -- adding -------------------------------------------------------------------------------------


def test_add_with_a_code(deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any) -> None:
    account_id, portal = added(deps, hubspot_sim, add_account, currency="EUR")
    account, errors = stored(deps, account_id)
    assert account.status == "connected"
    assert account.connection == {"portal_id": str(portal.id), "scopes": ["oauth"]}
    assert account.meta == {
        "portal_id": str(portal.id),
        "account_type": "STANDARD",
        "time_zone": "Europe/Stockholm",
        "currency": "EUR",
        "ui_domain": "app-eu1.hubspot.com",
        "data_hosting_location": "eu1",
    }
    credentials = deps.vault.decrypt(account.credentials)
    assert set(credentials) == {"access_token", "refresh_token", "expires_at"}
    assert account.credentials_expire_at is not None
    left = account.credentials_expire_at - datetime.now(UTC)
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)
    assert errors == []
    assert deps.connectors.get("hubspot").identity(account.connection, account.meta) == str(
        portal.id
    )


def test_add_through_the_authorize_page(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any
) -> None:
    hubspot_sim.authorizing = portal = hubspot_sim.add_portal()
    connector = deps.connectors.get("hubspot")
    page = httpx.get(connector.authorize_url(state="st-1", redirect_uri=REDIRECT, shop_domain=None))
    assert page.status_code == 200
    back = urlsplit(approve_link(page.text))
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    assert query["state"] == "st-1"
    assert hubspot_sim.authorize_requests[-1]["scope"] == "oauth"

    result = add_account(deps, "hubspot", {"code": query["code"], "redirect_uri": REDIRECT})
    assert result["status"] == "succeeded", result
    assert stored(deps, result["account"]["id"])[0].connection["portal_id"] == str(portal.id)


def test_a_declined_authorization_comes_back_with_an_error(
    deps: Deps, hubspot_sim: HubSpotSimulator
) -> None:
    hubspot_sim.deny_authorizations = True
    link = deps.connectors.get("hubspot").authorize_url(
        state="st-2", redirect_uri=REDIRECT, shop_domain=None
    )
    query = parse_qs(urlsplit(approve_link(httpx.get(link).text)).query)
    assert query["error"] == ["access_denied"]
    assert query["error_description"]
    assert query["state"] == ["st-2"]
    assert "code" not in query


@pytest.mark.parametrize("problem", ["used_code", "wrong_redirect", "bad_client"])
def test_add_with_a_bad_code_is_rejected(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, problem: str
) -> None:
    portal = hubspot_sim.add_portal()
    code = hubspot_sim.issue_code(portal, REDIRECT)
    redirect = REDIRECT
    if problem == "used_code":
        assert add_account(deps, "hubspot", {"code": code, "redirect_uri": REDIRECT})["account"]
    elif problem == "wrong_redirect":
        redirect = "https://elsewhere.test/cb"
    else:
        hubspot_sim.client_secret, saved = "rotated", hubspot_sim.client_secret
    try:
        result = add_account(deps, "hubspot", {"code": code, "redirect_uri": redirect})
    finally:
        if problem == "bad_client":
            hubspot_sim.client_secret = saved
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "credentials_invalid"
    assert code not in str(result)


def test_add_without_the_oauth_scope_is_rejected(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any
) -> None:
    portal = hubspot_sim.add_portal(scopes={"crm.objects.contacts.read"})
    code = hubspot_sim.issue_code(portal, REDIRECT)
    result = add_account(deps, "hubspot", {"code": code, "redirect_uri": REDIRECT})
    assert (result["status"], result["reason"]) == ("rejected", "confirmation_failed")
    assert result["error_code"] == "permission_missing"
    assert "oauth" in result["message"]
    with deps.db.unit_of_work() as s:
        assert s.scalars(select(Account)).first() is None


def test_add_while_hubspot_is_down_fails_temporarily(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any
) -> None:
    code = hubspot_sim.issue_code(hubspot_sim.add_portal(), REDIRECT)
    hubspot_sim.fail_next(503, times=FAST_RETRY.attempts, path=TOKEN_PATH)
    result = add_account(deps, "hubspot", {"code": code, "redirect_uri": REDIRECT})
    assert (result["status"], result["reason"]) == ("failed", "authorization_failed")
    assert result["error_code"] == "provider_unavailable"


# -- checking -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "times", "status", "code"),
    [
        (
            Answer(
                403,
                {
                    "category": "MISSING_SCOPES",
                    "errors": [{"context": {"requiredGranularScopes": ["oauth"]}}],
                },
            ),
            1,
            "error",
            "permission_missing",
        ),
        (Answer(423), FAST_RETRY.attempts, "degraded", "rate_limited"),
        (
            Answer(477, {"message": "Migration in progress"}, {"Retry-After": "0"}),
            FAST_RETRY.attempts,
            "degraded",
            "provider_unavailable",
        ),
        (Answer(503), FAST_RETRY.attempts, "degraded", "provider_unavailable"),
        (Answer(502), FAST_RETRY.attempts, "degraded", "provider_unavailable"),
        (Answer(400, {"message": "bad request"}), 2, "error", "credentials_invalid"),
    ],
)
def test_check_failures_set_status_and_error(
    deps: Deps,
    hubspot_sim: HubSpotSimulator,
    add_account: Any,
    check_account: Any,
    answer: Answer,
    times: int,
    status: str,
    code: str,
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    hubspot_sim.script.push(
        Answer(answer.status, answer.body, answer.headers, path=DETAILS_PATH), times
    )
    assert_fails_then_recovers(deps, check_account, account_id, status, code)


def test_a_ten_secondly_429_pauses_the_portal_for_the_window(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, portal = added(deps, hubspot_sim, add_account)
    body = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    hubspot_sim.script.push(Answer(429, body, path=DETAILS_PATH))
    result = check_account(deps, account_id)
    assert result["error_code"] == "rate_limited"
    assert hubspot_sim.count(DETAILS_PATH) == 2  # the add's, and one: the wait is over budget
    assert stored(deps, account_id)[0].status == "degraded"
    limiter = deps.connectors.http.limiters["hubspot"]
    assert 9.0 < limiter.paused_for(str(portal.id)) <= 10.0


def test_a_token_naming_another_portal_is_an_error(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    with deps.db.unit_of_work() as s:
        account = s.get(Account, uuid.UUID(account_id))
        assert account is not None
        account.connection = {**account.connection, "portal_id": "123"}
    result = check_account(deps, account_id)
    assert result["error_code"] == "credentials_invalid"
    account, errors = stored(deps, account_id)
    assert account.status == "error"
    assert "another HubSpot portal" in errors[0].message


def test_a_slow_hubspot_is_a_timeout(
    deps: Deps,
    hubspot_sim: HubSpotSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    assert_slow_answers_time_out(deps, connector_settings, hubspot_sim, check_account, account_id)


# -- the per-portal limit -----------------------------------------------------------------------


def test_checks_wait_for_the_window_instead_of_meeting_a_429(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    hubspot_sim.limit, hubspot_sim.window = 3, 1.0  # its headers say so; we follow them
    started = time.monotonic()
    results = [check_account(deps, account_id) for _ in range(5)]
    assert [r["passed"] for r in results] == [True] * 5
    assert hubspot_sim.rate_limited == 0
    assert time.monotonic() - started >= 0.9  # the window was waited for


def test_concurrent_checks_of_one_portal_stay_within_its_limit(
    hubspot_sim: HubSpotSimulator,
) -> None:
    portal = hubspot_sim.add_portal()
    code = hubspot_sim.issue_code(portal, REDIRECT)
    hubspot_sim.limit, hubspot_sim.window = 5, 1.0
    settings = sim_settings(hubspot_sim, requests_per_window=5, window_seconds=1.0)
    http = HttpLayer(timeout=5.0, retry=FAST_RETRY)
    hubspot = HubSpotConnector(settings, http)

    async def many() -> list[Any]:
        fields = HubSpotFields.model_validate({"code": code, "redirect_uri": REDIRECT})
        authorized = await hubspot.authorize(fields)
        checks = [hubspot.check(authorized.credentials, authorized.connection) for _ in range(12)]
        results = await asyncio.gather(*checks, return_exceptions=True)
        await http.aclose()
        return results

    started = time.monotonic()
    results = asyncio.run(many())
    assert [type(r).__name__ for r in results] == ["CheckResult"] * 12
    assert hubspot_sim.rate_limited == 0
    assert time.monotonic() - started >= 1.9  # 12 calls at 5 per second: two waits


# -- refreshing ---------------------------------------------------------------------------------


def test_an_expiring_token_is_refreshed_and_the_new_refresh_token_stored(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    old = expire_stored_token(deps, hubspot_sim, account_id)
    assert check_account(deps, account_id)["passed"] is True
    assert hubspot_sim.refresh_calls == 1
    new = credentials_of(deps, account_id)
    assert new["refresh_token"] != old["refresh_token"]
    assert new["access_token"] != old["access_token"]
    assert old["refresh_token"] not in hubspot_sim.refresh_tokens  # the strict sim killed it
    account, _ = stored(deps, account_id)
    assert account.credentials_version == 2
    assert account.credentials_expire_at is not None
    assert account.credentials_expire_at > datetime.now(UTC) + timedelta(minutes=29)

    # The next refresh uses the stored (rotated) token, and works.
    expire_stored_token(deps, hubspot_sim, account_id)
    assert check_account(deps, account_id)["passed"] is True
    assert hubspot_sim.refresh_calls == 2


def test_a_rejected_valid_token_is_refreshed_once_and_tried_again(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    old = credentials_of(deps, account_id)
    hubspot_sim.reject_next_valid_token()
    result = check_account(deps, account_id)
    assert result["passed"] is True, result
    assert hubspot_sim.refresh_calls == 1
    assert credentials_of(deps, account_id)["refresh_token"] != old["refresh_token"]
    account, errors = stored(deps, account_id)
    assert (account.status, errors) == ("connected", [])


def test_ten_concurrent_checks_meeting_a_rejected_token_refresh_once(
    deps: Deps,
    hubspot_sim: HubSpotSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    old = credentials_of(deps, account_id)
    hubspot_sim.reject_token(old["access_token"], category="EXPIRED_AUTHENTICATION")
    start = threading.Barrier(10)

    def one_check(_: int) -> dict[str, Any]:
        # Each thread is a worker process of its own: its own connectors, the same database.
        own = Connectors(connector_settings, HttpLayer(timeout=5.0, retry=FAST_RETRY))
        try:
            start.wait()
            result: dict[str, Any] = check_account(Deps(deps.db, deps.vault, own), account_id)
            return result
        finally:
            own.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(one_check, range(10)))

    assert [r["passed"] for r in results] == [True] * 10, results
    assert hubspot_sim.refresh_calls == 1  # a second refresh would have met a dead token
    account, errors = stored(deps, account_id)
    assert (account.status, errors, account.credentials_version) == ("connected", [], 2)
    with deps.db.unit_of_work() as s:
        changes = s.scalars(select(StatusChange).where(StatusChange.account_id == account.id)).all()
        assert [c.to_status for c in changes] == ["connected"]  # never left connected


def test_an_uninstall_seen_at_refresh_disconnects_the_account(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, portal = added(deps, hubspot_sim, add_account)
    old = expire_stored_token(deps, hubspot_sim, account_id)
    hubspot_sim.uninstall(portal)
    calls = hubspot_sim.count(DETAILS_PATH)

    result = check_account(deps, account_id)
    assert result["passed"] is False
    assert result["error_code"] == "connection_revoked"
    assert hubspot_sim.refresh_calls == 1  # permanent: not retried
    assert hubspot_sim.count(DETAILS_PATH) == calls  # no call with a dead token
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    assert [e.code for e in errors] == ["connection_revoked"]
    assert "uninstalled" in errors[0].message
    assert old["refresh_token"] not in errors[0].message

    # A disconnected account is not checked again until it is connected anew.
    again = check_account(deps, account_id)
    assert again["checked"] is False
    assert hubspot_sim.refresh_calls == 1


def test_a_rejection_a_refresh_cannot_cure_disconnects_the_account(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any, check_account: Any
) -> None:
    account_id, portal = added(deps, hubspot_sim, add_account)
    hubspot_sim.uninstall(portal)  # the access token dies too: the check meets a 401 first
    result = check_account(deps, account_id)
    assert result["error_code"] == "connection_revoked"
    assert hubspot_sim.refresh_calls == 1
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    assert [e.code for e in errors] == ["connection_revoked"]


# -- removing -----------------------------------------------------------------------------------


def test_remove_revokes_the_refresh_token(
    deps: Deps, hubspot_sim: HubSpotSimulator, add_account: Any
) -> None:
    account_id, _ = added(deps, hubspot_sim, add_account)
    refresh_token = credentials_of(deps, account_id)["refresh_token"]
    result = jobs.remove(deps, account_id=account_id)
    assert result["status"] == "succeeded", result
    assert result["revoked"] is True
    assert hubspot_sim.revoke_calls == 1
    assert hubspot_sim.revoked == [refresh_token]
    assert refresh_token not in hubspot_sim.refresh_tokens
    assert refresh_token not in str(result)
