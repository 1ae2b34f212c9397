"""Stripe Connect's OAuth pieces without a network: the authorize URL, revoking a connected
account (deauthorize) and not an API key, the upstream identity, and that nothing refreshes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ErrorCode, PermanentFailure, TemporaryFailure
from connectors.http import HttpLayer, RetryPolicy
from connectors.stripe import StripeConnector, StripeSettings

PLATFORM = "sk_test_platform" + "0" * 10
CLIENT_ID = "ca_platform123"
ACCOUNT = "acct_1NcOnnected"
CONNECTED = {"mode": "connect", "stripe_account_id": ACCOUNT}
REDIRECT = "http://127.0.0.1:8000/connect/stripe/callback"
Handler = Callable[[httpx.Request], httpx.Response]


async def no_sleep(seconds: float) -> None:
    return None


class Recorded:
    """A MockTransport handler that keeps every request it answered."""

    def __init__(self, answer: Handler) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)


def connector(handler: Handler, attempts: int = 1, **settings: Any) -> StripeConnector:
    http = HttpLayer(
        httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=attempts, initial_wait=0.001),
        sleep=no_sleep,
    )
    config = {
        "connect_base_url": "https://connect.stripe.test",
        "platform_key": SecretStr(PLATFORM),
        "connect_client_id": CLIENT_ID,
        **settings,
    }
    return StripeConnector(StripeSettings(**config), http)


def unused(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no call expected, got {request.method} {request.url}")


def deauthorized(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"stripe_user_id": ACCOUNT})


def oauth_answer(status: int, error: str, description: str) -> Handler:
    body = {"error": error, "error_description": description}
    return lambda r: httpx.Response(status, json=body)


def revoke(stripe: StripeConnector, credentials: dict[str, Any], connection: dict[str, Any]) -> Any:
    return asyncio.run(stripe.revoke(credentials, connection))


# -- authorize URL ----------------------------------------------------------------------------


def test_authorize_url_carries_every_parameter_in_order() -> None:
    url = connector(unused).authorize_url(state="st4te", redirect_uri=REDIRECT)
    assert url == (
        "https://connect.stripe.test/oauth/authorize?response_type=code&client_id=ca_platform123"
        "&scope=read_write&redirect_uri=http%3A%2F%2F127.0.0.1%3A8000%2Fconnect%2Fstripe%2F"
        "callback&state=st4te"
    )


def test_authorize_url_encodes_what_it_is_given() -> None:
    state = "a b&c=d/é"
    url = connector(unused).authorize_url(
        state=state, redirect_uri=REDIRECT + "?x=1", shop_domain=None
    )
    query = parse_qs(urlsplit(url).query)
    assert query["state"] == [state]
    assert query["redirect_uri"] == [REDIRECT + "?x=1"]
    assert query["client_id"] == [CLIENT_ID]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"connect_client_id": None}, "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID"),
        ({"connect_client_id": ""}, "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID"),
        ({"platform_key": None}, "CONNECTIONS_STRIPE_PLATFORM_KEY"),
    ],
)
def test_authorize_url_needs_connect_configured(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(PermanentFailure) as info:
        connector(unused, **settings).authorize_url(state="s", redirect_uri=REDIRECT)
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert named in info.value.message


# -- revoke -----------------------------------------------------------------------------------


def test_revoking_a_connected_account_deauthorizes_it_once() -> None:
    handler = Recorded(deauthorized)
    assert revoke(connector(handler), {"refresh_token": "rt_1"}, CONNECTED) is True
    (request,) = handler.requests
    assert (request.method, str(request.url)) == (
        "POST",
        "https://connect.stripe.test/oauth/deauthorize",
    )
    assert request.headers["Authorization"] == f"Bearer {PLATFORM}"
    assert "Stripe-Account" not in request.headers
    assert parse_qs(request.content.decode()) == {
        "client_id": [CLIENT_ID],
        "stripe_user_id": [ACCOUNT],
    }


def test_an_account_added_by_id_is_deauthorized_too() -> None:
    handler = Recorded(deauthorized)
    assert revoke(connector(handler), {}, {"stripe_account_id": ACCOUNT}) is True
    assert len(handler.requests) == 1


@pytest.mark.parametrize(
    ("credentials", "connection"),
    [
        ({"api_key": "sk_test_" + "k" * 24}, {"mode": "api_key", "key_last4": "kkkk"}),
        ({"api_key": "sk_test_" + "k" * 24}, {"stripe_account_id": ACCOUNT}),
        ({}, {"mode": "api_key"}),
        ({}, {"mode": "connect"}),
    ],
)
def test_an_api_key_or_an_account_without_id_is_not_revoked(
    credentials: dict[str, Any], connection: dict[str, Any]
) -> None:
    assert revoke(connector(unused), credentials, connection) is False


def test_an_account_no_longer_connected_counts_as_revoked() -> None:
    gone = oauth_answer(
        401,
        "invalid_client",
        f"This application is not connected to stripe account {ACCOUNT}, "
        "or that account does not exist.",
    )
    handler = Recorded(gone)
    assert revoke(connector(handler, attempts=3), {}, CONNECTED) is True
    assert len(handler.requests) == 1


@pytest.mark.parametrize(
    ("handler", "named"),
    [
        (
            oauth_answer(401, "invalid_client", "No such application: 'ca_platform123'"),
            "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID",
        ),
        (
            lambda r: httpx.Response(
                401, json={"error": {"message": f"Invalid API Key provided: {PLATFORM}"}}
            ),
            "platform key",
        ),
        (oauth_answer(400, "invalid_request", f"Bad {PLATFORM}"), "deauthorization"),
    ],
)
def test_a_refused_deauthorization_is_permanent(handler: Handler, named: str) -> None:
    counted = Recorded(handler)
    with pytest.raises(PermanentFailure) as info:
        revoke(connector(counted, attempts=3), {}, CONNECTED)
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert named in info.value.message
    assert PLATFORM not in info.value.message
    assert len(counted.requests) == 1


def test_revoke_without_a_client_id_says_which_setting_and_calls_nothing() -> None:
    with pytest.raises(PermanentFailure) as info:
        revoke(connector(unused, connect_client_id=None), {}, CONNECTED)
    assert "CONNECTIONS_STRIPE_CONNECT_CLIENT_ID" in info.value.message


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        (lambda r: httpx.Response(500, json={"error": "server_error"}), "provider_unavailable"),
        (lambda r: httpx.Response(503), "provider_unavailable"),
        (lambda r: httpx.Response(429, headers={"Retry-After": "0"}), "rate_limited"),
        (timeout, "timeout"),
    ],
)
def test_a_failing_stripe_makes_revoke_temporary(handler: Handler, code: str) -> None:
    counted = Recorded(handler)
    with pytest.raises(TemporaryFailure) as info:
        revoke(connector(counted, attempts=2), {}, CONNECTED)
    assert info.value.code == code
    assert len(counted.requests) == 2  # retried within the policy, then given up


# -- identity and refresh ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("connection", "metadata", "expected"),
    [
        (CONNECTED, {}, ACCOUNT),
        (CONNECTED, {"stripe_account_id": "acct_other0000"}, ACCOUNT),
        ({"mode": "api_key", "key_last4": "abcd"}, {"stripe_account_id": ACCOUNT}, ACCOUNT),
        ({"mode": "api_key"}, {}, None),
        ({"mode": "api_key"}, {"stripe_account_id": None}, None),
    ],
)
def test_identity_is_the_stripe_account(
    connection: dict[str, Any], metadata: dict[str, Any], expected: str | None
) -> None:
    assert connector(unused).identity(connection, metadata) == expected


def test_nothing_of_stripe_can_be_refreshed() -> None:
    stripe = connector(unused)
    assert stripe.can_refresh({"refresh_token": "rt_1"}) is False
    assert stripe.can_refresh({"api_key": "sk_test_" + "k" * 24}) is False
    with pytest.raises(PermanentFailure) as info:
        asyncio.run(stripe.refresh({"refresh_token": "rt_1"}, CONNECTED))
    assert info.value.code is ErrorCode.REFRESH_FAILED
