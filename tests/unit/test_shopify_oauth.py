"""Shopify's OAuth edges without a network: the authorize link (and its refusals), revoking the
app's permission, the shop an account names, whether its credentials can be refreshed, and the
provider value the registry reads."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import HttpLayer
from connectors.provider import RECORD
from connectors.shopify import (
    PROVIDER,
    TOPICS,
    ShopifyConnector,
    ShopifySettings,
    ShopifyWebhooks,
)
from tests.unit.test_shopify import NOW, SHOP, TOKEN, connector, never_called, run

CALLBACK = "https://connect.example.com/connect/shopify/callback"
OAUTH = {"shop_domain": SHOP, "mode": "oauth", "scope": "read_orders"}
PERMISSION = f"https://{SHOP}/admin/api_permissions/current.json"


def unconfigured() -> ShopifyConnector:
    return ShopifyConnector(ShopifySettings(), HttpLayer(httpx.MockTransport(never_called)))


# -- settings -------------------------------------------------------------------------------
def test_settings_read_the_contract_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_SHOPIFY_CLIENT_ID", "env-client")
    monkeypatch.setenv("CONNECTIONS_SHOPIFY_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("CONNECTIONS_SHOPIFY_SCOPES", "read_customers")
    settings = ShopifySettings()
    assert settings.client_id == "env-client"
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "env-secret"
    assert settings.scopes == "read_customers"
    assert "env-secret" not in repr(settings)
    # Constructor arguments still win, as the registry and the tests pass them.
    given = ShopifySettings(client_secret=SecretStr("given"))
    assert given.client_secret is not None
    assert given.client_secret.get_secret_value() == "given"


def test_default_scopes_read_products_and_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTIONS_SHOPIFY_SCOPES", raising=False)
    assert ShopifySettings().scopes == "read_products,read_orders"


# -- the authorize link ---------------------------------------------------------------------
def test_authorize_url_is_the_shops_authorize_page_with_our_query() -> None:
    shopify = connector(never_called, scopes=" read_products, read_orders ,write_draft_orders")
    url = shopify.authorize_url(state="st-1", redirect_uri=CALLBACK, shop_domain=SHOP)
    assert url == (
        f"https://{SHOP}/admin/oauth/authorize?client_id=client-1"
        "&scope=read_products%2Cread_orders%2Cwrite_draft_orders"
        "&redirect_uri=https%3A%2F%2Fconnect.example.com%2Fconnect%2Fshopify%2Fcallback"
        "&state=st-1"
    )
    assert parse_qsl(urlsplit(url).query) == [
        ("client_id", "client-1"),
        ("scope", "read_products,read_orders,write_draft_orders"),
        ("redirect_uri", CALLBACK),
        ("state", "st-1"),
    ]
    assert "hush" not in url  # the app secret never leaves


def test_authorize_url_takes_the_shop_from_the_given_domain_and_the_base_url() -> None:
    shopify = connector(never_called, base_url="http://127.0.0.1:9999/{shop}")
    url = shopify.authorize_url(
        state="a b&c", redirect_uri=CALLBACK, shop_domain=" Other-Shop.MyShopify.com "
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("http", "127.0.0.1:9999")
    assert parts.path == "/other-shop.myshopify.com/admin/oauth/authorize"
    query = dict(parse_qsl(parts.query))
    assert query["state"] == "a b&c"
    assert query["scope"] == "read_products,read_orders"


@pytest.mark.parametrize(
    "shop", [None, "", "shop.example.com", "evil.com/x", "some-shop.myshopify.com.evil.com"]
)
def test_authorize_url_refuses_without_a_shop_domain(shop: str | None) -> None:
    with pytest.raises(PermanentFailure) as info:
        connector(never_called).authorize_url(state="s", redirect_uri=CALLBACK, shop_domain=shop)
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert "myshopify.com" in info.value.message


def test_authorize_url_refuses_when_the_app_is_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CLIENT_ID", "CLIENT_SECRET"):
        monkeypatch.delenv(f"CONNECTIONS_SHOPIFY_{name}", raising=False)
    with pytest.raises(PermanentFailure) as info:
        unconfigured().authorize_url(state="s", redirect_uri=CALLBACK, shop_domain=SHOP)
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert "CONNECTIONS_SHOPIFY_CLIENT_ID" in info.value.message


# -- revoke ---------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [200, 204, 401])
def test_revoke_deletes_the_apps_permission_with_the_token(status: int) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if status == 401:  # the token died with an earlier uninstall: nothing left to revoke
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        return httpx.Response(status, json={} if status == 200 else None)

    assert run(connector(handler).revoke({"access_token": TOKEN}, OAUTH)) is True
    (request,) = requests
    assert (request.method, request.url) == ("DELETE", PERMISSION)
    assert request.headers["X-Shopify-Access-Token"] == TOKEN


def test_revoke_leaves_a_custom_apps_token_alone() -> None:
    connection = {"shop_domain": SHOP, "mode": "access_token"}
    assert run(connector(never_called).revoke({"access_token": TOKEN}, connection)) is False


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (500, ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
        (503, ErrorCode.PROVIDER_UNAVAILABLE, TemporaryFailure),
        (429, ErrorCode.RATE_LIMITED, TemporaryFailure),
        (402, ErrorCode.ACCOUNT_FROZEN, PermanentFailure),
        (423, ErrorCode.ACCOUNT_LOCKED, PermanentFailure),
    ],
)
def test_revoke_failures_are_classified(
    status: int, code: ErrorCode, kind: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"errors": "nope"})

    with pytest.raises(kind) as info:
        run(connector(handler).revoke({"access_token": TOKEN}, OAUTH))
    assert info.value.code is code
    assert TOKEN not in info.value.message


def test_revoke_is_retried_like_any_call_on_a_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("slow", request=request)

    with pytest.raises(TemporaryFailure) as info:
        run(connector(handler).revoke({"access_token": TOKEN}, OAUTH))
    assert info.value.code is ErrorCode.TIMEOUT


def test_revoke_with_an_expired_token_asks_for_a_refresh_first() -> None:
    # Shopify would answer 401, which would read as "already revoked" while the app stays.
    credentials = {
        "access_token": TOKEN,
        "refresh_token": "shprt_old",
        "expires_at": (NOW - timedelta(minutes=1)).isoformat(),
    }
    with pytest.raises(PermanentFailure) as info:
        run(connector(never_called).revoke(credentials, OAUTH))
    assert info.value.code is ErrorCode.CREDENTIALS_EXPIRED


def test_revoke_with_a_live_expiring_token_goes_ahead() -> None:
    credentials = {"access_token": TOKEN, "expires_at": (NOW + timedelta(minutes=1)).isoformat()}
    shopify = connector(lambda r: httpx.Response(200, json={}))
    assert run(shopify.revoke(credentials, OAUTH)) is True


# -- identity and refreshability ------------------------------------------------------------
def test_identity_is_the_shop_domain() -> None:
    shopify = connector(never_called)
    assert shopify.identity({"shop_domain": SHOP, "mode": "oauth"}, {}) == SHOP
    assert shopify.identity({}, {"myshopify_domain": "Other.myshopify.com"}) == (
        "other.myshopify.com"
    )
    assert shopify.identity({}, {}) is None


def test_can_refresh_only_with_a_refresh_token() -> None:
    shopify = connector(never_called)
    assert shopify.can_refresh({"access_token": TOKEN, "refresh_token": "shprt_1"}) is True
    assert shopify.can_refresh({"access_token": TOKEN}) is False
    assert shopify.can_refresh({"access_token": TOKEN, "refresh_token": ""}) is False


# -- the provider value ---------------------------------------------------------------------
def test_the_provider_names_everything_the_registry_needs() -> None:
    assert (PROVIDER.type, PROVIDER.title) == ("shopify", "Shopify")
    assert PROVIDER.settings is ShopifySettings
    assert PROVIDER.routes == (("connection", "shop_domain"),)
    assert PROVIDER.account_secret_field is None
    assert PROVIDER.topics is TOPICS
    assert PROVIDER.topic("orders/create") is RECORD
    settings = ShopifySettings(client_id="c", client_secret=SecretStr("s"))
    http = HttpLayer(httpx.MockTransport(never_called))
    built = PROVIDER.connector(settings, http, lambda: NOW)
    assert isinstance(built, ShopifyConnector)
    assert built.settings is settings
    assert built.clock() == NOW
    assert PROVIDER.webhooks is not None
    assert isinstance(PROVIDER.webhooks(settings, "https://connect.example.com"), ShopifyWebhooks)
