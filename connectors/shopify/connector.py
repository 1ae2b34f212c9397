"""Shopify: a shop reached with a custom app's access token, or through the app's OAuth (a verified
callback `code` exchanged for an expiring offline token that is refreshed before it expires)."""

from __future__ import annotations

import builtins
import hmac
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from connectors.base import (
    Authorized,
    CheckResult,
    Clock,
    ErrorCode,
    PermanentFailure,
    stored_time,
    utc_now,
)
from connectors.http import HttpLayer
from connectors.shopify.check import (
    SHOP_QUERY,
    call_limit,
    classify_api,
    classify_graphql,
    graphql_metadata,
    rest_metadata,
    throttle_status,
)
from connectors.shopify.oauth import (
    app_credentials,
    authorize_link,
    classify_exchange,
    classify_refresh,
    classify_revoke,
    granted_scope,
    shop_url,
    tokens,
    verify_callback,
)
from connectors.shopify.settings import ShopifyFields, ShopifySettings


class ShopifyConnector:
    type: ClassVar[str] = "shopify"
    credentials_model: ClassVar[builtins.type[BaseModel]] = ShopifyFields

    def __init__(self, settings: ShopifySettings, http: HttpLayer, clock: Clock = utc_now):
        self.settings = settings
        self.http = http
        self.clock = clock
        self.limiter = http.limiter(
            "shopify", settings.requests_per_window, settings.window_seconds
        )

    # -- authorize -------------------------------------------------------------------------
    def authorize_url(self, *, state: str, redirect_uri: str, shop_domain: str | None) -> str:
        return authorize_link(
            self.settings, state=state, redirect_uri=redirect_uri, shop=shop_domain
        )

    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, ShopifyFields)
        shop = fields.shop_domain
        if fields.access_token is not None:
            return Authorized(
                {"access_token": fields.access_token.get_secret_value()},
                {"shop_domain": shop, "mode": "access_token"},
            )
        assert fields.code is not None
        client_id, secret = app_credentials(self.settings)
        query = fields.callback_query()
        if query is not None:
            self._verify(query, fields)
        started = self.clock()
        response = await self.http.request(
            "POST",
            shop_url(self.settings, shop, "/admin/oauth/access_token"),
            json={
                "client_id": client_id,
                "client_secret": secret,
                "code": fields.code.get_secret_value(),
                "expiring": "1",
            },
            headers={"Accept": "application/json"},
            classify=classify_exchange,
        )
        credentials, expires_at = tokens(response, started)
        connection = {"shop_domain": shop, "mode": "oauth", "scope": granted_scope(response)}
        return Authorized(credentials, connection, expires_at)

    def _verify(self, query: dict[str, str], fields: ShopifyFields) -> None:
        assert fields.code is not None
        # The signature covers the callback's code and shop: they must be the ones we exchange.
        if not hmac.compare_digest(query.get("code", ""), fields.code.get_secret_value()):
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID, "the Shopify callback is for another code"
            )
        if query.get("shop", "").lower() != fields.shop_domain:
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID, "the Shopify callback is for another shop"
            )
        verify_callback(
            query,
            self.settings.app_secrets(),
            self.clock(),
            self.settings.callback_max_age_seconds,
        )

    def identity(self, connection: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        """The shop domain: a reconnect must name the same shop."""
        for value in (connection.get("shop_domain"), metadata.get("myshopify_domain")):
            if isinstance(value, str) and value:
                return value.lower()
        return None

    # -- refresh ---------------------------------------------------------------------------
    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        expires_at = stored_time(credentials.get("expires_at"))
        if expires_at is None or not credentials.get("refresh_token"):
            return False  # a non-expiring offline token
        return expires_at - now <= timedelta(seconds=self.settings.refresh_margin_seconds)

    def can_refresh(self, credentials: dict[str, Any]) -> bool:
        return bool(credentials.get("refresh_token"))

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            raise PermanentFailure(
                ErrorCode.REFRESH_FAILED, "this Shopify token cannot be refreshed; connect again"
            )
        started = self.clock()
        refresh_expires = stored_time(credentials.get("refresh_token_expires_at"))
        if refresh_expires is not None and refresh_expires <= started:
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_EXPIRED,
                "the Shopify refresh token has expired; connect the shop again",
            )
        client_id, secret = app_credentials(self.settings)
        response = await self.http.request(
            "POST",
            shop_url(self.settings, connection["shop_domain"], "/admin/oauth/access_token"),
            json={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
            },
            headers={"Accept": "application/json"},
            classify=classify_refresh,
        )
        new, expires_at = tokens(response, started)
        scope = granted_scope(response)
        connection = {**connection, "scope": scope or connection.get("scope")}
        return Authorized(new, connection, expires_at)

    # -- revoke ----------------------------------------------------------------------------
    async def revoke(self, credentials: dict[str, Any], connection: dict[str, Any]) -> bool:
        """Delete the app's permission on the shop (the app is uninstalled from it)."""
        if connection.get("mode") == "access_token":
            # A custom app's token belongs to an app the merchant made in their own admin:
            # deleting its permission would uninstall their app, which is theirs to do, not ours.
            return False
        expires_at = stored_time(credentials.get("expires_at"))
        if expires_at is not None and expires_at <= self.clock():
            # Shopify answers an expired token with 401, as a revoked one: refresh first, or
            # that answer would be taken for "already gone" while the app stays installed.
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_EXPIRED,
                "the Shopify access token has expired; refresh it before revoking the app",
            )
        shop = connection["shop_domain"]
        await self.http.request(
            "DELETE",
            shop_url(self.settings, shop, "/admin/api_permissions/current.json"),
            headers={
                "X-Shopify-Access-Token": credentials["access_token"],
                "Accept": "application/json",
            },
            classify=classify_revoke,
            limiter=self.limiter,
            limit_key=shop,
        )
        return True

    # -- check -----------------------------------------------------------------------------
    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        shop = connection["shop_domain"]
        headers = {
            "X-Shopify-Access-Token": credentials["access_token"],
            "Accept": "application/json",
        }
        base = f"/admin/api/{self.settings.api_version}"
        if self.settings.health_check == "rest":
            response = await self.http.request(
                "GET",
                shop_url(self.settings, shop, f"{base}/shop.json"),
                headers=headers,
                classify=classify_api,
                limiter=self.limiter,
                limit_key=shop,
                observe=lambda r: self._throttle(shop, r),
            )
            return CheckResult(rest_metadata(response))
        response = await self.http.request(
            "POST",
            shop_url(self.settings, shop, f"{base}/graphql.json"),
            json={"query": SHOP_QUERY},
            headers=headers,
            classify=classify_graphql,
            limiter=self.limiter,
            limit_key=shop,
            observe=lambda r: self._throttle(shop, r),
        )
        return CheckResult(graphql_metadata(response))

    def _throttle(self, shop: str, response: httpx.Response) -> None:
        """Pause this shop's calls before Shopify has to answer 429: when the REST bucket is
        nearly full, or GraphQL has few cost points left, wait for the bucket to drain."""
        settings = self.settings
        used, size = call_limit(response.headers.get("X-Shopify-Shop-Api-Call-Limit"))
        if size and settings.rest_leak_rate > 0:
            short = settings.rest_reserve_calls - (size - used)
            if short >= 0:
                self.limiter.defer(shop, (short + 1) / settings.rest_leak_rate)
        status = throttle_status(response)
        if status is not None:
            available, restore_rate = status
            reserve = settings.graphql_reserve_points
            if available < reserve and restore_rate > 0:
                self.limiter.defer(shop, (reserve - available) / restore_rate)
