"""The Stripe connector without a network: the three credential forms, the headers each uses,
and how Stripe's answers map to error codes (a revoked Connect account is connection_revoked)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import HttpLayer, RetryPolicy
from connectors.stripe import StripeConnector, StripeFields, StripeSettings

KEY = "sk_test_" + "k3y" * 8
PLATFORM = "sk_test_platform" + "0" * 10
ACCOUNT = "acct_1NcOnnected"
REVOKED_MESSAGE = (
    f"The provided key 'sk_test_****{PLATFORM[-4:]}' does not have access to account "
    f"'{ACCOUNT}' (or that account does not exist). Application access may have been revoked."
)
Handler = Callable[[httpx.Request], httpx.Response]


async def no_sleep(seconds: float) -> None:
    return None


def connector(handler: Handler, attempts: int = 1, **settings: Any) -> StripeConnector:
    http = HttpLayer(
        httpx.MockTransport(handler),
        retry=RetryPolicy(attempts=attempts, initial_wait=0.001),
        sleep=no_sleep,
    )
    config = StripeSettings(
        api_base_url="https://api.stripe.test",
        connect_base_url="https://connect.stripe.test",
        platform_key=SecretStr(PLATFORM),
        **settings,
    )
    return StripeConnector(config, http)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def account(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": ACCOUNT,
            "business_profile": {"name": "Fika AB"},
            "country": "SE",
            "default_currency": "sek",
            "charges_enabled": True,
            "payouts_enabled": False,
            "requirements": {"currently_due": ["external_account"], "disabled_reason": None},
        },
    )


def error(status: int, message: str, **headers: str) -> Handler:
    return lambda r: httpx.Response(
        status,
        json={"error": {"type": "invalid_request_error", "message": message}},
        headers=headers,
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"api_key": "pk_test_" + "a" * 20},
        {"api_key": KEY, "code": "ac_123"},
        {"stripe_account_id": "acct_1"},
        {"code": "ac_123", "webhook_secret": "whsec_" + "a" * 20},
        {"api_key": KEY, "webhook_secret": "secret"},
    ],
)
def test_fields_refuse_bad_forms(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StripeFields.model_validate(fields)


def test_api_key_is_checked_with_the_key_itself() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return account(request)

    fields = StripeFields(api_key=SecretStr(KEY))
    authorized = run(connector(handler, api_version="2025-01-27.acacia").authorize(fields))
    assert authorized.credentials == {"api_key": KEY}
    assert authorized.connection == {"mode": "api_key", "key_last4": KEY[-4:]}
    (request,) = requests
    assert str(request.url) == "https://api.stripe.test/v1/account"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Stripe-Version"] == "2025-01-27.acacia"
    assert "Stripe-Account" not in request.headers


def test_connect_code_is_exchanged_with_the_platform_key() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(
            200,
            json={"stripe_user_id": ACCOUNT, "refresh_token": "rt_1", "scope": "read_write"},
        )

    authorized = run(connector(handler).authorize(StripeFields(code=SecretStr("ac_123"))))
    (request,) = requests
    assert str(request.url) == "https://connect.stripe.test/oauth/token"
    assert request.headers["Authorization"] == f"Bearer {PLATFORM}"
    assert parse_qs(request.content.decode()) == {
        "grant_type": ["authorization_code"],
        "code": ["ac_123"],
    }
    assert authorized.connection["stripe_account_id"] == ACCOUNT
    assert authorized.credentials == {"refresh_token": "rt_1"}


def test_a_refused_code_is_credentials_invalid() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_grant", "error_description": "Authorization code does not exist"}
        return httpx.Response(400, json=body)

    with pytest.raises(PermanentFailure) as info:
        run(connector(handler).authorize(StripeFields(code=SecretStr("ac_123"))))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert "ac_123" not in info.value.message


def test_a_connected_account_is_checked_with_platform_key_and_stripe_account() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return account(request)

    stripe = connector(handler)
    authorized = run(stripe.authorize(StripeFields(stripe_account_id=ACCOUNT)))
    assert requests == []  # confirmation is the first check
    result = run(stripe.check(authorized.credentials, authorized.connection))
    (request,) = requests
    assert request.headers["Authorization"] == f"Bearer {PLATFORM}"
    assert request.headers["Stripe-Account"] == ACCOUNT
    assert result.metadata["business_name"] == "Fika AB"
    assert result.metadata["currently_due"] == ["external_account"]
    assert result.metadata["payouts_enabled"] is False


def test_connect_without_a_platform_key_is_refused() -> None:
    http = HttpLayer(httpx.MockTransport(account))
    stripe = StripeConnector(StripeSettings(), http)
    with pytest.raises(PermanentFailure) as info:
        run(stripe.authorize(StripeFields(stripe_account_id=ACCOUNT)))
    assert "CONNECTIONS_STRIPE_PLATFORM_KEY" in info.value.message


@pytest.mark.parametrize(
    ("handler", "code", "kind"),
    [
        (error(403, REVOKED_MESSAGE), ErrorCode.CONNECTION_REVOKED, PermanentFailure),
        (error(401, REVOKED_MESSAGE), ErrorCode.CONNECTION_REVOKED, PermanentFailure),
        (
            error(401, "Invalid API Key provided: sk_test_****abcd"),
            ErrorCode.CREDENTIALS_INVALID,
            PermanentFailure,
        ),
        (
            error(
                403, "The provided key 'rk_test_****abcd' does not have the required permissions"
            ),
            ErrorCode.PERMISSION_MISSING,
            PermanentFailure,
        ),
        (
            error(429, "Too many requests", **{"Retry-After": "1"}),
            ErrorCode.RATE_LIMITED,
            TemporaryFailure,
        ),
        (error(500, "Internal"), ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
        (error(409, "Lock timeout"), ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
        (
            error(500, "Internal", **{"Stripe-Should-Retry": "false"}),
            ErrorCode.PROVIDER_UNAVAILABLE,
            PermanentFailure,
        ),
    ],
)
def test_check_failures_map_to_codes(
    handler: Handler, code: ErrorCode, kind: type[ProviderError]
) -> None:
    with pytest.raises(kind) as info:
        run(connector(handler).check({}, {"mode": "connect", "stripe_account_id": ACCOUNT}))
    assert info.value.code is code
    assert PLATFORM not in info.value.message


def test_revocation_is_never_retried_but_5xx_is() -> None:
    calls: list[int] = []

    def counting(inner: Handler) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            calls.append(1)
            return inner(request)

        return handler

    with pytest.raises(PermanentFailure):
        run(
            connector(counting(error(403, REVOKED_MESSAGE)), attempts=4).check(
                {}, {"stripe_account_id": ACCOUNT}
            )
        )
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(TemporaryFailure):
        run(
            connector(counting(error(502, "Bad gateway")), attempts=4).check(
                {}, {"stripe_account_id": ACCOUNT}
            )
        )
    assert len(calls) == 4


def test_an_unexpected_answer_never_echoes_a_key() -> None:
    handler = error(400, f"Something about {KEY} went wrong")
    with pytest.raises(PermanentFailure) as info:
        run(connector(handler).check({"api_key": KEY}, {"mode": "api_key"}))
    assert KEY not in info.value.message
    assert KEY[-4:] in info.value.message


def test_stripe_never_needs_a_refresh() -> None:
    stripe = connector(account)
    assert stripe.needs_refresh({"api_key": KEY}, datetime.now(UTC)) is False
