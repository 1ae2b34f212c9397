"""Stripe against its simulator and the real PostgreSQL: each credential form added through
the `accounts.add` job, and every failure a check can get, with the status and error it leaves;
and Connect's OAuth on its own: the authorize page, the code it sends back, and deauthorization."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from connectors import ConnectorSettings
from connectors.base import PermanentFailure, TemporaryFailure
from connectors.http import HttpLayer
from connectors.stripe import StripeConnector, StripeFields, StripeSettings
from models import Account
from tests.conftest import FAST_RETRY
from tests.fixtures.connectors import (
    assert_fails_then_recovers,
    assert_slow_answers_time_out,
    stored,
)
from tests.simulators.base import Answer
from tests.simulators.stripe import StripeSimulator
from worker.service.deps import Deps


def test_add_with_an_api_key(deps: Deps, stripe_sim: StripeSimulator, add_account: Any) -> None:
    account_id, key = stripe_sim.add_account("Fika AB")
    result = add_account(deps, "stripe", {"api_key": key})
    assert result["status"] == "succeeded", result
    account, errors = stored(deps, result["account"]["id"])
    assert account.status == "connected"
    assert account.meta["business_name"] == "Fika AB"
    assert account.meta["stripe_account_id"] == account_id
    assert account.connection == {"mode": "api_key", "key_last4": key[-4:]}
    assert deps.vault.decrypt(account.credentials) == {"api_key": key}
    assert errors == []


def test_add_with_a_connect_code(deps: Deps, stripe_sim: StripeSimulator, add_account: Any) -> None:
    account_id, _ = stripe_sim.add_account("Connected AB")
    code = stripe_sim.issue_code(account_id)
    result = add_account(deps, "stripe", {"code": code})
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    assert account.connection["stripe_account_id"] == account_id
    assert account.meta["business_name"] == "Connected AB"
    assert "refresh_token" in deps.vault.decrypt(account.credentials)

    again = add_account(deps, "stripe", {"code": code})  # codes are single use
    assert again["status"] == "rejected"
    assert again["reason"] == "authorization_failed"
    assert again["error_code"] == "credentials_invalid"
    assert code not in again["message"]


def test_add_with_a_connected_account_id(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any
) -> None:
    account_id, _ = stripe_sim.add_account("Platform Child AB")
    result = add_account(deps, "stripe", {"stripe_account_id": account_id})
    assert result["status"] == "succeeded", result
    account, _ = stored(deps, result["account"]["id"])
    assert account.status == "connected"
    assert account.meta["business_name"] == "Platform Child AB"
    assert deps.vault.decrypt(account.credentials) == {}


def test_add_with_an_unknown_key_or_unconnected_account_is_rejected(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any
) -> None:
    bad_key = "sk_test_" + "0" * 24
    result = add_account(deps, "stripe", {"api_key": bad_key})
    assert (result["status"], result["reason"]) == ("rejected", "authorization_failed")
    assert result["error_code"] == "credentials_invalid"
    assert bad_key not in str(result)

    result = add_account(deps, "stripe", {"stripe_account_id": "acct_neverconnected"})
    assert (result["status"], result["reason"]) == ("rejected", "confirmation_failed")
    assert result["error_code"] == "connection_revoked"
    with deps.db.unit_of_work() as s:
        assert s.scalars(select(Account)).first() is None


@pytest.mark.parametrize(
    ("answer", "times", "status", "code"),
    [
        (
            Answer(401, {"error": {"message": "Invalid API Key provided"}}),
            1,
            "error",
            "credentials_invalid",
        ),
        (
            Answer(
                403,
                {"error": {"message": "The provided key does not have the required permissions"}},
            ),
            1,
            "error",
            "permission_missing",
        ),
        (
            Answer(429, {"error": {"message": "Too many requests"}}, {"Retry-After": "0.01"}),
            3,
            "degraded",
            "rate_limited",
        ),
        (Answer(500, {"error": {"message": "Internal"}}), 3, "degraded", "provider_unavailable"),
        (Answer(503), 3, "degraded", "provider_unavailable"),
    ],
)
def test_check_failures_set_status_and_error(
    deps: Deps,
    stripe_sim: StripeSimulator,
    add_account: Any,
    check_account: Any,
    answer: Answer,
    times: int,
    status: str,
    code: str,
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.script.push(answer, times)
    assert_fails_then_recovers(deps, check_account, account_id, status, code)


def test_a_temporary_failure_within_the_retries_does_not_change_status(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.fail_next(503, times=2)
    assert check_account(deps, account_id)["passed"] is True
    assert stored(deps, account_id)[0].status == "connected"


def test_a_rolled_key_leaves_the_account_in_error(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    stripe_sim.roll_key(key)
    result = check_account(deps, account_id)
    assert result["error_code"] == "credentials_invalid"
    assert stored(deps, account_id)[0].status == "error"


def test_revoked_connect_access_disconnects_the_account(
    deps: Deps, stripe_sim: StripeSimulator, add_account: Any, check_account: Any
) -> None:
    stripe_account, _ = stripe_sim.add_account()
    code = stripe_sim.issue_code(stripe_account)
    account_id = add_account(deps, "stripe", {"code": code})["account"]["id"]
    stripe_sim.revoke(stripe_account)
    calls_before = stripe_sim.count("/v1/account")

    result = check_account(deps, account_id)
    assert result["error_code"] == "connection_revoked"
    assert stripe_sim.count("/v1/account") == calls_before + 1  # permanent: never retried
    account, errors = stored(deps, account_id)
    assert account.status == "disconnected"
    assert [e.code for e in errors] == ["connection_revoked"]
    assert stripe_sim.platform_key not in errors[0].message


def test_a_slow_stripe_is_a_timeout(
    deps: Deps,
    stripe_sim: StripeSimulator,
    add_account: Any,
    check_account: Any,
    connector_settings: ConnectorSettings,
) -> None:
    _, key = stripe_sim.add_account()
    account_id = add_account(deps, "stripe", {"api_key": key})["account"]["id"]
    assert_slow_answers_time_out(deps, connector_settings, stripe_sim, check_account, account_id)


# -- Connect's OAuth against the simulator ----------------------------------------------------

CALLBACK = "http://127.0.0.1:8000/connect/stripe/callback"
T = TypeVar("T")


def connect(sim: StripeSimulator, scenario: Callable[[StripeConnector], Awaitable[T]]) -> T:
    """Run `scenario` with a Connect-configured connector on the simulator, in one event loop."""
    settings = StripeSettings(
        api_base_url=sim.url,
        connect_base_url=sim.url,
        platform_key=SecretStr(sim.platform_key),
        connect_client_id=sim.client_id,
    )

    async def run() -> T:
        http = HttpLayer(retry=FAST_RETRY)
        try:
            return await scenario(StripeConnector(settings, http))
        finally:
            await http.aclose()

    return asyncio.run(run())


def follow_authorize_page(url: str) -> tuple[str, dict[str, list[str]]]:
    """What a person's browser does on the page: follow its one link; (where, query)."""
    page = httpx.get(url)
    assert page.status_code == 200, page.text
    found = re.search(r'href="([^"]+)"', page.text)
    assert found is not None, page.text
    target = urlsplit(html.unescape(found.group(1)))
    return f"{target.scheme}://{target.netloc}{target.path}", parse_qs(target.query)


def test_the_authorize_page_sends_back_a_code_that_connects_the_account(
    stripe_sim: StripeSimulator,
) -> None:
    stripe_account, _ = stripe_sim.add_account("Browser AB")
    stripe_sim.authorize_as(stripe_account)

    async def scenario(stripe: StripeConnector) -> Any:
        url = stripe.authorize_url(state="st4te", redirect_uri=CALLBACK)
        where, query = await asyncio.to_thread(follow_authorize_page, url)
        assert where == CALLBACK
        assert query["state"] == ["st4te"]
        authorized = await stripe.authorize(StripeFields(code=SecretStr(query["code"][0])))
        return authorized, await stripe.check(authorized.credentials, authorized.connection)

    authorized, result = connect(stripe_sim, scenario)
    assert authorized.connection["stripe_account_id"] == stripe_account
    assert result.metadata["business_name"] == "Browser AB"


def test_a_denied_authorization_sends_back_the_error_and_no_code(
    stripe_sim: StripeSimulator,
) -> None:
    stripe_sim.deny_next("The user denied your request")

    async def scenario(stripe: StripeConnector) -> Any:
        url = stripe.authorize_url(state="st4te", redirect_uri=CALLBACK)
        return await asyncio.to_thread(follow_authorize_page, url)

    where, query = connect(stripe_sim, scenario)
    assert where == CALLBACK
    assert query == {
        "error": ["access_denied"],
        "error_description": ["The user denied your request"],
        "state": ["st4te"],
    }


def test_the_authorize_page_refuses_another_client_id(stripe_sim: StripeSimulator) -> None:
    url = f"{stripe_sim.url}/oauth/authorize?response_type=code&client_id=ca_other"
    assert httpx.get(f"{url}&redirect_uri={CALLBACK}").status_code == 400


def test_revoking_a_connect_account_deauthorizes_it_once(stripe_sim: StripeSimulator) -> None:
    stripe_account, _ = stripe_sim.add_account()
    code = stripe_sim.issue_code(stripe_account)
    calls = stripe_sim.count("/oauth/deauthorize")

    async def scenario(stripe: StripeConnector) -> Any:
        authorized = await stripe.authorize(StripeFields(code=SecretStr(code)))
        revoked = await stripe.revoke(authorized.credentials, authorized.connection)
        with pytest.raises(PermanentFailure) as info:
            await stripe.check(authorized.credentials, authorized.connection)
        again = await stripe.revoke(authorized.credentials, authorized.connection)
        return revoked, info.value.code, again

    revoked, code_after, again = connect(stripe_sim, scenario)
    assert revoked is True
    assert code_after == "connection_revoked"
    assert again is True  # already gone counts as revoked
    assert stripe_sim.deauthorized(stripe_account) == 1
    assert [d for d in stripe_sim.deauthorizations if d[2] == stripe_account] == [
        (stripe_sim.platform_key, stripe_sim.client_id, stripe_account)
    ]
    assert stripe_sim.count("/oauth/deauthorize") == calls + 2


def test_an_api_key_account_is_not_revoked(stripe_sim: StripeSimulator) -> None:
    _, key = stripe_sim.add_account()
    calls = stripe_sim.count("/oauth/deauthorize")

    async def scenario(stripe: StripeConnector) -> Any:
        authorized = await stripe.authorize(StripeFields(api_key=SecretStr(key)))
        return await stripe.revoke(authorized.credentials, authorized.connection)

    assert connect(stripe_sim, scenario) is False
    assert stripe_sim.count("/oauth/deauthorize") == calls


def test_a_deauthorization_during_an_outage_is_temporary(stripe_sim: StripeSimulator) -> None:
    stripe_account, _ = stripe_sim.add_account()
    connection = {"mode": "connect", "stripe_account_id": stripe_account}
    stripe_sim.script.push(Answer(503, path="/oauth/deauthorize"), FAST_RETRY.attempts)

    async def scenario(stripe: StripeConnector) -> Any:
        with pytest.raises(TemporaryFailure) as info:
            await stripe.revoke({}, connection)
        assert stripe_sim.deauthorized(stripe_account) == 0
        return info.value.code, await stripe.revoke({}, connection)

    assert connect(stripe_sim, scenario) == ("provider_unavailable", True)
    assert stripe_sim.deauthorized(stripe_account) == 1
