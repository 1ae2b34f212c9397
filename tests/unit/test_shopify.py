"""The Shopify connector without a network: credential forms, the OAuth callback HMAC (the
PROVIDERS.md vector), code exchange and refresh, status mapping, and throttling feedback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import HttpLayer, RetryPolicy
from connectors.shopify import (
    ShopifyConnector,
    ShopifyFields,
    ShopifySettings,
    query_hmac,
    verify_callback,
)
from tests.unit.fakes import FakeTime

SHOP = "some-shop.myshopify.com"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN = "shpat_" + "ab12" * 8
VECTOR_QUERY = {
    "code": "a94a110d86d2452eb3e2af4cfb8a3828",
    "shop": "some-shop.myshopify.com",
    "timestamp": "1337178173",
}
VECTOR_HMAC = "2cb1a277650a659f1b11e92a4a64275b128e037f2c3390e3c8fd2d8721dac9e2"
ONE_TRY = RetryPolicy(attempts=1)


Handler = Callable[[httpx.Request], httpx.Response]


def connector(
    handler: Handler,
    *,
    now: datetime = NOW,
    policy: RetryPolicy = ONE_TRY,
    fake: FakeTime | None = None,
    **settings: Any,
) -> ShopifyConnector:
    fake = fake or FakeTime()
    http = HttpLayer(httpx.MockTransport(handler), retry=policy, sleep=fake.sleep, clock=fake.clock)
    defaults: dict[str, Any] = {
        "base_url": "https://{shop}",
        "client_id": "client-1",
        "client_secret": SecretStr("hush"),
    }
    config = ShopifySettings(**{**defaults, **settings})
    return ShopifyConnector(config, http, clock=lambda: now)


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no HTTP call expected, got {request.method} {request.url}")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def signed(query: dict[str, str], secret: str = "hush") -> dict[str, str]:
    return {**query, "hmac": query_hmac(query, secret)}


def shop_answer(available: int = 1990, rate: float = 100.0) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": {
                "shop": {
                    "name": "Some Shop",
                    "plan": {"displayName": "Shopify Plus"},
                    "currencyCode": "SEK",
                    "myshopifyDomain": SHOP,
                }
            },
            "extensions": {
                "cost": {
                    "requestedQueryCost": 1,
                    "actualQueryCost": 1,
                    "throttleStatus": {
                        "maximumAvailable": 2000.0,
                        "currentlyAvailable": available,
                        "restoreRate": rate,
                    },
                }
            },
        },
    )


# -- the callback HMAC ----------------------------------------------------------------------
def test_query_hmac_matches_the_published_vector() -> None:
    assert query_hmac(VECTOR_QUERY, "hush") == VECTOR_HMAC
    assert query_hmac({**VECTOR_QUERY, "hmac": VECTOR_HMAC}, "hush") == VECTOR_HMAC


def test_verify_callback_accepts_the_vector_within_90_seconds() -> None:
    query = {**VECTOR_QUERY, "hmac": VECTOR_HMAC}
    signed_at = datetime.fromtimestamp(1337178173, UTC)
    verify_callback(query, ["hush"], signed_at + timedelta(seconds=89), 90)
    verify_callback(query, ["rotated-away", "hush"], signed_at, 90)  # the previous secret


@pytest.mark.parametrize(
    ("change", "delay"),
    [
        ({"hmac": "0" * 64}, 0),  # forged
        ({"code": "b94a110d86d2452eb3e2af4cfb8a3828"}, 0),  # tampered code
        ({}, 91),  # stale
        ({}, -91),  # from the future
    ],
)
def test_verify_callback_rejects_forged_or_stale(change: dict[str, str], delay: int) -> None:
    query = {**VECTOR_QUERY, "hmac": VECTOR_HMAC, **change}
    now = datetime.fromtimestamp(1337178173, UTC) + timedelta(seconds=delay)
    with pytest.raises(PermanentFailure) as info:
        verify_callback(query, ["hush"], now, 90)
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert VECTOR_HMAC not in info.value.message


# -- credential fields ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"shop_domain": "shop.example.com", "access_token": TOKEN},
        {"shop_domain": "https://some-shop.myshopify.com", "access_token": TOKEN},
        {"shop_domain": SHOP},
        {"shop_domain": SHOP, "access_token": TOKEN, "code": "abc"},
        {"shop_domain": SHOP, "access_token": TOKEN, "hmac": "x", "timestamp": "1"},
        {"shop_domain": SHOP, "code": "abc", "timestamp": "1", "state": "s"},  # no hmac
        {"shop_domain": SHOP, "code": "abc", "callback": {"code": "abc"}},  # no hmac
        {"shop_domain": SHOP, "api_key": "x"},
    ],
)
def test_fields_refuse_bad_forms(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ShopifyFields.model_validate(fields)


def test_fields_accept_both_forms_and_normalize_the_domain() -> None:
    custom = ShopifyFields.model_validate(
        {"shop_domain": " Some-Shop.MyShopify.com ", "access_token": TOKEN}
    )
    assert custom.shop_domain == SHOP
    loose = ShopifyFields.model_validate(
        {
            "shop_domain": SHOP,
            "code": VECTOR_QUERY["code"],
            "hmac": VECTOR_HMAC,
            "timestamp": "1337178173",
        }
    )
    assert loose.callback_query() == {**VECTOR_QUERY, "hmac": VECTOR_HMAC}
    assert TOKEN not in repr(custom)


# -- authorize ------------------------------------------------------------------------------
def test_access_token_form_needs_no_call() -> None:
    fields = ShopifyFields(shop_domain=SHOP, access_token=SecretStr(TOKEN))
    authorized = run(connector(never_called).authorize(fields))
    assert authorized.credentials == {"access_token": TOKEN}
    assert authorized.connection["shop_domain"] == SHOP
    assert authorized.expires_at is None


def token_endpoint(seen: list[dict[str, Any]], answer: dict[str, Any] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url == f"https://{SHOP}/admin/oauth/access_token"
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json=answer
            or {
                "access_token": "shpat_new",
                "scope": "read_orders",
                "expires_in": 3600,
                "refresh_token": "shprt_new",
                "refresh_token_expires_in": 7776000,
            },
        )

    return handler


def test_code_with_a_valid_callback_is_exchanged_for_an_expiring_token() -> None:
    seen: list[dict[str, Any]] = []
    now = datetime.fromtimestamp(1337178173 + 30, UTC)
    fields = ShopifyFields.model_validate(
        {
            "shop_domain": SHOP,
            "code": VECTOR_QUERY["code"],
            "callback": {**VECTOR_QUERY, "hmac": VECTOR_HMAC},
        }
    )
    authorized = run(connector(token_endpoint(seen), now=now).authorize(fields))
    assert seen == [
        {
            "client_id": "client-1",
            "client_secret": "hush",
            "code": VECTOR_QUERY["code"],
            "expiring": "1",
        }
    ]
    assert authorized.credentials["access_token"] == "shpat_new"
    assert authorized.credentials["refresh_token"] == "shprt_new"
    assert authorized.expires_at == now + timedelta(hours=1)
    assert authorized.credentials["expires_at"] == (now + timedelta(hours=1)).isoformat()
    assert (
        authorized.credentials["refresh_token_expires_at"] == (now + timedelta(days=90)).isoformat()
    )
    assert authorized.connection == {"shop_domain": SHOP, "mode": "oauth", "scope": "read_orders"}


def test_code_without_callback_is_exchanged_and_a_non_expiring_answer_is_kept() -> None:
    seen: list[dict[str, Any]] = []
    fields = ShopifyFields(shop_domain=SHOP, code=SecretStr("abc"))
    handler = token_endpoint(seen, {"access_token": "shpua_forever", "scope": "read_orders"})
    authorized = run(connector(handler).authorize(fields))
    assert authorized.credentials == {"access_token": "shpua_forever"}
    assert authorized.expires_at is None
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("callback", "seconds_later"),
    [
        ({**VECTOR_QUERY, "hmac": "f" * 64}, 5),  # forged
        ({**VECTOR_QUERY, "hmac": VECTOR_HMAC}, 91),  # stale
        (signed({**VECTOR_QUERY, "shop": "other-shop.myshopify.com"}), 5),  # another shop
        (signed({**VECTOR_QUERY, "code": "other"}), 5),  # another code
        (signed(VECTOR_QUERY, secret="not-our-secret"), 5),  # another app
    ],
)
def test_a_bad_callback_is_rejected_before_any_exchange(
    callback: dict[str, str], seconds_later: int
) -> None:
    fields = ShopifyFields.model_validate(
        {"shop_domain": SHOP, "code": VECTOR_QUERY["code"], "callback": callback}
    )
    now = datetime.fromtimestamp(1337178173 + seconds_later, UTC)
    with pytest.raises(PermanentFailure) as info:
        run(connector(never_called, now=now).authorize(fields))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert VECTOR_QUERY["code"] not in info.value.message


def test_loose_callback_fields_are_verified_too() -> None:
    fields = ShopifyFields.model_validate(
        {
            "shop_domain": SHOP,
            "code": VECTOR_QUERY["code"],
            "hmac": "e" * 64,
            "timestamp": "1337178173",
        }
    )
    with pytest.raises(PermanentFailure):
        run(connector(never_called, now=datetime.fromtimestamp(1337178173, UTC)).authorize(fields))


def test_a_used_code_is_credentials_invalid() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": "invalid_request", "error_description": "code was already used"}
        )

    fields = ShopifyFields(shop_domain=SHOP, code=SecretStr("abc"))
    with pytest.raises(PermanentFailure) as info:
        run(connector(handler).authorize(fields))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID


def test_without_an_app_configured_a_code_cannot_be_exchanged() -> None:
    http = HttpLayer(httpx.MockTransport(never_called))
    shopify = ShopifyConnector(ShopifySettings(), http)
    with pytest.raises(PermanentFailure) as info:
        run(shopify.authorize(ShopifyFields(shop_domain=SHOP, code=SecretStr("abc"))))
    assert "CONNECTIONS_SHOPIFY_CLIENT_SECRET" in info.value.message


# -- refresh --------------------------------------------------------------------------------
def expiring(minutes: float, **extra: Any) -> dict[str, Any]:
    return {
        "access_token": TOKEN,
        "refresh_token": "shprt_old",
        "expires_at": (NOW + timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


def test_needs_refresh_five_minutes_before_expiry() -> None:
    shopify = connector(never_called)
    assert not shopify.needs_refresh(expiring(6), NOW)
    assert shopify.needs_refresh(expiring(4), NOW)
    assert shopify.needs_refresh(expiring(-10), NOW)
    assert not shopify.needs_refresh({"access_token": TOKEN}, NOW)  # non-expiring


def test_refresh_rotates_the_tokens() -> None:
    seen: list[dict[str, Any]] = []
    shopify = connector(token_endpoint(seen))
    connection = {"shop_domain": SHOP, "mode": "oauth", "scope": "read_orders"}
    refreshed = run(shopify.refresh(expiring(2), connection))
    assert seen == [
        {
            "client_id": "client-1",
            "client_secret": "hush",
            "grant_type": "refresh_token",
            "refresh_token": "shprt_old",
        }
    ]
    assert refreshed.credentials["access_token"] == "shpat_new"
    assert refreshed.credentials["refresh_token"] == "shprt_new"
    assert refreshed.expires_at == NOW + timedelta(hours=1)
    assert not shopify.needs_refresh(refreshed.credentials, NOW)


def test_a_refused_refresh_is_refresh_failed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_grant"})

    with pytest.raises(PermanentFailure) as info:
        run(connector(handler).refresh(expiring(1), {"shop_domain": SHOP}))
    assert info.value.code is ErrorCode.REFRESH_FAILED
    assert "shprt_old" not in info.value.message


def test_an_expired_refresh_token_is_credentials_expired_without_a_call() -> None:
    credentials = expiring(1, refresh_token_expires_at=(NOW - timedelta(days=1)).isoformat())
    with pytest.raises(PermanentFailure) as info:
        run(connector(never_called).refresh(credentials, {"shop_domain": SHOP}))
    assert info.value.code is ErrorCode.CREDENTIALS_EXPIRED


# -- check ----------------------------------------------------------------------------------
def test_check_asks_graphql_for_the_shop() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return shop_answer()

    result = run(connector(handler).check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert result.metadata == {
        "shop_name": "Some Shop",
        "plan": "Shopify Plus",
        "currency": "SEK",
        "myshopify_domain": SHOP,
    }
    (request,) = requests
    assert request.method == "POST"
    assert request.url == f"https://{SHOP}/admin/api/2025-10/graphql.json"
    assert request.headers["X-Shopify-Access-Token"] == TOKEN
    assert "shop" in json.loads(request.content)["query"]


def test_check_over_rest_reads_shop_json() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/admin/api/2025-10/shop.json"
        return httpx.Response(
            200,
            json={
                "shop": {
                    "name": "S",
                    "plan_display_name": "Basic",
                    "currency": "EUR",
                    "myshopify_domain": SHOP,
                }
            },
            headers={"X-Shopify-Shop-Api-Call-Limit": "1/40"},
        )

    shopify = connector(handler, health_check="rest")
    result = run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert result.metadata["plan"] == "Basic"
    assert result.metadata["currency"] == "EUR"


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, ErrorCode.CREDENTIALS_INVALID, PermanentFailure),
        (402, ErrorCode.ACCOUNT_FROZEN, PermanentFailure),
        (403, ErrorCode.PERMISSION_MISSING, PermanentFailure),
        (404, ErrorCode.CREDENTIALS_INVALID, PermanentFailure),
        (423, ErrorCode.ACCOUNT_LOCKED, PermanentFailure),
        (429, ErrorCode.RATE_LIMITED, TemporaryFailure),
        (500, ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
        (503, ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
    ],
)
def test_check_failures_map_to_codes(
    status: int, code: ErrorCode, kind: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"errors": "nope"}, headers={"Retry-After": "2.0"})

    with pytest.raises(kind) as info:
        run(connector(handler).check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert info.value.code is code
    assert TOKEN not in info.value.message
    if status == 429:
        assert info.value.retry_after == 2.0


def test_a_timeout_is_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TemporaryFailure) as info:
        run(connector(handler).check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert info.value.code is ErrorCode.TIMEOUT


def test_429_is_retried_after_its_retry_after() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "1.5"}), shop_answer()]
    fake = FakeTime()
    policy = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, max_total_wait=10)
    shopify = connector(lambda r: answers.pop(0), policy=policy, fake=fake)
    run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert answers == []
    assert fake.waits == [1.5]


def test_graphql_throttled_is_rate_limited_with_the_restore_wait() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": 11,
                        "throttleStatus": {
                            "maximumAvailable": 2000,
                            "currentlyAvailable": 1,
                            "restoreRate": 100,
                        },
                    }
                },
            },
        )

    with pytest.raises(TemporaryFailure) as info:
        run(connector(handler).check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert info.value.code is ErrorCode.RATE_LIMITED
    assert info.value.retry_after == pytest.approx(0.1)


def test_graphql_access_denied_is_permission_missing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        errors = [{"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}]
        return httpx.Response(200, json={"errors": errors})

    with pytest.raises(PermanentFailure) as info:
        run(connector(handler).check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert info.value.code is ErrorCode.PERMISSION_MISSING


# -- throttling feedback --------------------------------------------------------------------
def test_low_graphql_points_pause_the_shop_before_a_429() -> None:
    shopify = connector(lambda r: shop_answer(available=10, rate=100.0))
    run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    # 50 points in reserve, 10 left, restoring 100/s: wait 0.4 s before the next call.
    assert shopify.limiter.paused_for(SHOP) == pytest.approx(0.4)
    assert shopify.limiter.paused_for("another-shop.myshopify.com") == 0.0


def test_plenty_of_graphql_points_do_not_pause() -> None:
    shopify = connector(lambda r: shop_answer(available=1999))
    run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert shopify.limiter.paused_for(SHOP) == 0.0


@pytest.mark.parametrize(("header", "pause"), [("10/40", 0.0), ("36/40", 0.5), ("40/40", 2.5)])
def test_the_rest_call_limit_header_pauses_a_nearly_full_bucket(header: str, pause: float) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        shop = {"name": "S", "plan_display_name": "B", "currency": "SEK", "myshopify_domain": SHOP}
        return httpx.Response(
            200, json={"shop": shop}, headers={"X-Shopify-Shop-Api-Call-Limit": header}
        )

    fake = FakeTime()
    shopify = connector(handler, health_check="rest", fake=fake)
    run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert shopify.limiter.paused_for(SHOP) == pytest.approx(pause)
    # The next call for the shop waits the pause out first.
    run(shopify.check({"access_token": TOKEN}, {"shop_domain": SHOP}))
    assert sum(fake.waits) == pytest.approx(pause)
