"""Fortnox against its simulator and the real PostgreSQL: adding with an OAuth code (from the
authorize page), every failure a check can get, the single-use refresh token under concurrent
checks, and revocation."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from connectors import Connectors, ConnectorSettings, ErrorCode, PermanentFailure, TemporaryFailure
from connectors.http import HttpLayer
from models import Account, StatusChange
from tests.conftest import FAST_RETRY
from tests.fixtures.connectors import (
    assert_fails_then_recovers,
    assert_slow_answers_time_out,
    stored,
)
from tests.simulators.base import Answer
from tests.simulators.fortnox import FortnoxSimulator, approve_link, error_information
from worker.service.deps import Deps

REDIRECT = "https://app.standout.test/oauth/fortnox"


def added(deps: Deps, sim: FortnoxSimulator, add_account: Any, name: str = "Acme AB") -> str:
    tenant = sim.add_tenant(name)
    result = add_account(
        deps, "fortnox", {"code": sim.issue_code(tenant, REDIRECT), "redirect_uri": REDIRECT}
    )
    assert result["status"] == "succeeded", result
    return str(result["account"]["id"])


def expire_stored_token(deps: Deps, sim: FortnoxSimulator, account_id: str) -> dict[str, Any]:
    """Make the account's access token expired, for us and for Fortnox alike."""
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


def test_add_with_a_code(deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any) -> None:
    account_id = added(deps, fortnox_sim, add_account, "Fika Bokföring AB")
    account, errors = stored(deps, account_id)
    assert account.status == "connected"
    assert account.connection["company_name"] == "Fika Bokföring AB"
    assert account.connection["organization_number"]
    assert account.meta["company_name"] == "Fika Bokföring AB"
    credentials = deps.vault.decrypt(account.credentials)
    assert set(credentials) == {"access_token", "refresh_token", "expires_at"}
    assert account.credentials_expire_at is not None
    assert account.credentials_expire_at > datetime.now(UTC) + timedelta(minutes=55)
    assert errors == []


@pytest.mark.parametrize("problem", ["used_code", "wrong_redirect", "bad_client"])
def test_add_with_a_bad_code_is_rejected(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any, problem: str
) -> None:
    tenant = fortnox_sim.add_tenant()
    code = fortnox_sim.issue_code(tenant, REDIRECT)
    redirect = REDIRECT
    if problem == "used_code":
        assert add_account(deps, "fortnox", {"code": code, "redirect_uri": REDIRECT})["account"]
    elif problem == "wrong_redirect":
        redirect = "https://elsewhere.test/cb"
    else:
        fortnox_sim.client_secret, saved = "rotated", fortnox_sim.client_secret
    try:
        result = add_account(deps, "fortnox", {"code": code, "redirect_uri": redirect})
    finally:
        if problem == "bad_client":
            fortnox_sim.client_secret = saved
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "credentials_invalid"
    assert code not in str(result)


def test_add_without_an_api_licence_is_rejected(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    tenant = fortnox_sim.add_tenant(api_licence=False)
    code = fortnox_sim.issue_code(tenant, REDIRECT)
    result = add_account(deps, "fortnox", {"code": code, "redirect_uri": REDIRECT})
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "licence_missing"
    with deps.db.unit_of_work() as s:
        assert s.scalars(select(Account)).first() is None


def test_add_while_fortnox_is_down_fails_temporarily(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    tenant = fortnox_sim.add_tenant()
    code = fortnox_sim.issue_code(tenant, REDIRECT)
    fortnox_sim.fail_next(503, times=3, path="/oauth-v1/token")
    result = add_account(deps, "fortnox", {"code": code, "redirect_uri": REDIRECT})
    assert (result["status"], result["reason"]) == ("failed", "authorization_failed")
    assert result["error_code"] == "provider_unavailable"


@pytest.mark.parametrize(
    ("answer", "times", "status", "code"),
    [
        # A rejected token is refreshed once and tried again: only a second rejection counts.
        (Answer(401, error_information(2000311, "Ogiltig")), 2, "error", "credentials_invalid"),
        (Answer(401), 2, "error", "credentials_invalid"),
        (
            Answer(400, error_information(2001103, "Licens saknas", capitalized=True)),
            1,
            "error",
            "licence_missing",
        ),
        (Answer(403, error_information(2001101, "Scope")), 1, "error", "licence_missing"),
        (Answer(403), 1, "error", "permission_missing"),
        (
            Answer(500, error_information(1000003, "Systemfel")),
            3,
            "degraded",
            "provider_unavailable",
        ),
        (Answer(503), 3, "degraded", "provider_unavailable"),
        (Answer(429, {"message": "Too Many Requests"}), 3, "degraded", "rate_limited"),
    ],
)
def test_check_failures_set_status_and_error(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    add_account: Any,
    check_account: Any,
    answer: Answer,
    times: int,
    status: str,
    code: str,
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    fortnox_sim.script.push(Answer(answer.status, answer.body, path="/3/companyinformation"), times)
    assert_fails_then_recovers(deps, check_account, account_id, status, code)
    assert fortnox_sim.refresh_calls == (1 if code == "credentials_invalid" else 0)


def test_the_simulators_rate_limit_answers_429(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any, check_account: Any
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    fortnox_sim.limit = 3  # the add used two calls of this tenant's window
    assert check_account(deps, account_id)["passed"] is True
    result = check_account(deps, account_id)
    assert result["error_code"] == "rate_limited"
    assert fortnox_sim.rate_limited == FAST_RETRY.attempts  # each retry met the full window
    assert stored(deps, account_id)[0].status == "degraded"


def test_a_licence_removed_later_puts_the_account_in_error(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any, check_account: Any
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    account, _ = stored(deps, account_id)
    tenant = next(
        t
        for t in fortnox_sim.tenants.values()
        if t.organization_number == account.connection["organization_number"]
    )
    tenant.api_licence = False
    assert check_account(deps, account_id)["error_code"] == "licence_missing"
    assert stored(deps, account_id)[0].status == "error"


def test_a_slow_fortnox_is_a_timeout(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    assert_slow_answers_time_out(deps, connector_settings, fortnox_sim, check_account, account_id)


def test_an_expired_token_is_refreshed_once_under_20_concurrent_checks(
    deps: Deps,
    fortnox_sim: FortnoxSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    old = expire_stored_token(deps, fortnox_sim, account_id)
    assert fortnox_sim.refresh_calls == 0
    start = threading.Barrier(20)

    def one_check(_: int) -> dict[str, Any]:
        # Each thread is a worker process of its own: its own connectors, the same database.
        own = Connectors(connector_settings, HttpLayer(timeout=5.0, retry=FAST_RETRY))
        try:
            start.wait()
            return check_account(Deps(deps.db, deps.vault, own), account_id)  # type: ignore[no-any-return]
        finally:
            own.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one_check, range(20)))

    assert [r["passed"] for r in results] == [True] * 20, results
    assert fortnox_sim.refresh_calls == 1
    account, errors = stored(deps, account_id)
    assert account.status == "connected"
    assert errors == []
    credentials = deps.vault.decrypt(account.credentials)
    assert credentials["refresh_token"] != old["refresh_token"]
    assert credentials["access_token"] != old["access_token"]
    assert account.credentials_version == 2
    with deps.db.unit_of_work() as s:
        changes = s.scalars(select(StatusChange).where(StatusChange.account_id == account.id)).all()
        assert [c.to_status for c in changes] == ["connected"]  # never left connected


def test_a_refresh_token_already_used_leaves_the_account_in_error(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any, check_account: Any
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    old = expire_stored_token(deps, fortnox_sim, account_id)
    fortnox_sim.use_refresh_token(old["refresh_token"])  # spent elsewhere
    api_calls = fortnox_sim.count("/3/companyinformation")

    result = check_account(deps, account_id)
    assert result["passed"] is False
    assert result["error_code"] == "refresh_failed"
    assert fortnox_sim.refresh_calls == 1  # permanent: not retried
    assert fortnox_sim.count("/3/companyinformation") == api_calls  # no call with a dead token
    account, errors = stored(deps, account_id)
    assert account.status == "error"
    assert [e.code for e in errors] == ["refresh_failed"]
    assert old["refresh_token"] not in errors[0].message
    # The stored tokens are untouched: the failed refresh wrote nothing.
    assert deps.vault.decrypt(account.credentials)["refresh_token"] == old["refresh_token"]

    # Another check tries once more and fails the same way: one call, one open error.
    assert check_account(deps, account_id)["error_code"] == "refresh_failed"
    assert fortnox_sim.refresh_calls == 2
    account, errors = stored(deps, account_id)
    assert account.status == "error"
    assert [(e.code, e.occurrences) for e in errors] == [("refresh_failed", 2)]


def test_the_authorize_page_leads_back_with_a_code_that_connects(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    fortnox_sim.authorizing = fortnox_sim.add_tenant("Via Sidan AB")
    url = deps.connectors.get("fortnox").authorize_url(
        state="st-42", redirect_uri=REDIRECT, shop_domain=None
    )
    page = httpx.get(url, timeout=5)
    assert page.status_code == 200
    back = httpx.URL(approve_link(page.text))
    assert str(back.copy_with(query=None)) == REDIRECT
    assert back.params["state"] == "st-42"
    [asked] = fortnox_sim.authorize_requests
    assert (asked["scope"], asked["access_type"]) == ("companyinformation", "offline")

    result = add_account(deps, "fortnox", {"code": back.params["code"], "redirect_uri": REDIRECT})
    assert result["status"] == "succeeded", result
    assert result["account"]["status"] == "connected"
    account, _ = stored(deps, str(result["account"]["id"]))
    assert account.connection["company_name"] == "Via Sidan AB"


def test_a_refused_authorization_leads_back_with_access_denied(
    deps: Deps, fortnox_sim: FortnoxSimulator
) -> None:
    fortnox_sim.deny_authorizations = True
    codes = len(fortnox_sim.codes)
    url = deps.connectors.get("fortnox").authorize_url(
        state="st-7", redirect_uri=REDIRECT, shop_domain=None
    )
    back = httpx.URL(approve_link(httpx.get(url, timeout=5).text))
    assert dict(back.params) == {
        "error": "access_denied",
        "error_description": "refused",
        "state": "st-7",
    }
    assert len(fortnox_sim.codes) == codes  # no code was issued


def test_revoke_kills_the_refresh_token_and_its_access(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    account, _ = stored(deps, account_id)
    credentials = deps.vault.decrypt(account.credentials)
    fortnox = deps.connectors.get("fortnox")

    assert deps.connectors.run(fortnox.revoke(credentials, account.connection)) is True
    assert fortnox_sim.revoked == [credentials["refresh_token"]]
    assert fortnox_sim.count("/oauth-v1/revoke", "POST") == 1
    with pytest.raises(PermanentFailure) as info:
        deps.connectors.run(fortnox.check(credentials, account.connection))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    with pytest.raises(PermanentFailure) as info:
        deps.connectors.run(fortnox.refresh(credentials, account.connection))
    assert info.value.code is ErrorCode.REFRESH_FAILED


def test_revoke_while_fortnox_is_down_is_temporary(
    deps: Deps, fortnox_sim: FortnoxSimulator, add_account: Any
) -> None:
    account_id = added(deps, fortnox_sim, add_account)
    account, _ = stored(deps, account_id)
    credentials = deps.vault.decrypt(account.credentials)
    fortnox_sim.fail_next(503, times=FAST_RETRY.attempts, path="/oauth-v1/revoke")
    with pytest.raises(TemporaryFailure) as info:
        deps.connectors.run(deps.connectors.get("fortnox").revoke(credentials, account.connection))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert fortnox_sim.revoked == []
    # The tokens still work: nothing was revoked.
    assert deps.connectors.run(
        deps.connectors.get("fortnox").check(credentials, account.connection)
    ).metadata
