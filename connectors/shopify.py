"""Shopify: a shop reached with a custom app's access token, or through the app's OAuth (a verified
callback `code` exchanged for an expiring offline token that is refreshed before it expires)."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from connectors.base import (
    Authorized,
    CheckResult,
    Clock,
    ErrorCode,
    PermanentFailure,
    ProviderError,
    TemporaryFailure,
    stored_time,
    utc_now,
)
from connectors.http import HttpLayer, common_failure, json_object, oauth_error

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")
SHOP_QUERY = "{ shop { name plan { displayName } currencyCode myshopifyDomain } }"
CALLBACK_FIELDS = ("hmac", "timestamp", "state", "host")


class ShopifySettings(BaseModel):
    base_url: str = "https://{shop}"  # `{shop}` is the shop domain; tests point it at a simulator
    client_id: str | None = None
    client_secret: SecretStr | None = None
    previous_client_secret: SecretStr | None = None
    api_version: str = "2025-10"
    health_check: Literal["graphql", "rest"] = "graphql"
    refresh_margin_seconds: float = 300.0
    callback_max_age_seconds: float = 90.0
    # The REST leaky bucket: 40 calls, leaking 2 per second; we keep a few calls in reserve.
    requests_per_window: int = 40
    window_seconds: float = 20.0
    rest_leak_rate: float = 2.0
    rest_reserve_calls: int = 4
    # GraphQL cost points kept in reserve before we pause for the bucket to restore.
    graphql_reserve_points: float = 50.0


class ShopifyFields(BaseModel):
    """`shop_domain` and exactly one of `access_token` or `code`. With `code`, optionally the
    OAuth callback's query parameters: as `callback`, or as `hmac`, `timestamp`, `state`, `host`."""

    model_config = ConfigDict(extra="forbid")

    shop_domain: str
    access_token: SecretStr | None = None
    code: SecretStr | None = None
    callback: dict[str, str] | None = None
    hmac: SecretStr | None = None
    timestamp: str | None = None
    state: str | None = None
    host: str | None = None

    @field_validator("shop_domain")
    @classmethod
    def _domain_shape(cls, value: str) -> str:
        value = value.strip().lower()
        if not SHOP_DOMAIN.match(value):
            raise ValueError("must be the shop's <name>.myshopify.com domain")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> ShopifyFields:
        if (self.access_token is None) == (self.code is None):
            raise ValueError("give exactly one of access_token or code")
        loose = [f for f in CALLBACK_FIELDS if getattr(self, f) is not None]
        if self.access_token is not None and (self.callback is not None or loose):
            raise ValueError("callback parameters go with code, not with access_token")
        if self.callback is not None and loose:
            raise ValueError("give the callback parameters either as callback or as fields")
        if loose and self.hmac is None:
            raise ValueError("callback parameters without hmac cannot be verified")
        if self.callback is not None and "hmac" not in self.callback:
            raise ValueError("callback has no hmac to verify")
        return self

    def callback_query(self) -> dict[str, str] | None:
        """The callback's query parameters as Shopify sent them, or None when none were given."""
        if self.callback is not None:
            return dict(self.callback)
        if self.hmac is None:
            return None
        assert self.code is not None
        query = {"code": self.code.get_secret_value(), "shop": self.shop_domain}
        for name in CALLBACK_FIELDS:
            value = getattr(self, name)
            if value is not None:
                query[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return query


def query_hmac(query: dict[str, str], secret: str) -> str:
    """Shopify's OAuth callback signature: hex HMAC-SHA256 over the sorted `k=v` pairs but hmac."""
    message = "&".join(f"{k}={v}" for k, v in sorted(query.items()) if k != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_callback(
    query: dict[str, str], secrets: list[str], now: datetime, max_age: float
) -> None:
    """Raise credentials_invalid unless the callback is signed with one of `secrets` and fresh."""
    given = query.get("hmac", "")
    if not any(hmac.compare_digest(query_hmac(query, s), given) for s in secrets):
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "the Shopify callback's signature does not match; start the connection again",
        )
    try:
        signed_at = datetime.fromtimestamp(int(query.get("timestamp", "")), UTC)
    except (ValueError, OverflowError, OSError):
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "the Shopify callback has no valid timestamp"
        ) from None
    if abs((now - signed_at).total_seconds()) > max_age:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "the Shopify callback is too old; start the connection again",
        )


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
    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, ShopifyFields)
        shop = fields.shop_domain
        if fields.access_token is not None:
            return Authorized(
                {"access_token": fields.access_token.get_secret_value()},
                {"shop_domain": shop, "mode": "access_token"},
            )
        assert fields.code is not None
        client_id, secret = self._app()
        query = fields.callback_query()
        if query is not None:
            self._verify(query, fields)
        started = self.clock()
        response = await self.http.request(
            "POST",
            self._url(shop, "/admin/oauth/access_token"),
            json={
                "client_id": client_id,
                "client_secret": secret,
                "code": fields.code.get_secret_value(),
                "expiring": "1",
            },
            headers={"Accept": "application/json"},
            classify=_classify_exchange,
        )
        credentials, expires_at = _tokens(response, started)
        connection = {"shop_domain": shop, "mode": "oauth", "scope": _scope(response)}
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
        secrets = [
            s.get_secret_value()
            for s in (self.settings.client_secret, self.settings.previous_client_secret)
            if s is not None
        ]
        verify_callback(query, secrets, self.clock(), self.settings.callback_max_age_seconds)

    # -- refresh ---------------------------------------------------------------------------
    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        expires_at = stored_time(credentials.get("expires_at"))
        if expires_at is None or not credentials.get("refresh_token"):
            return False  # a non-expiring offline token
        return expires_at - now <= timedelta(seconds=self.settings.refresh_margin_seconds)

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
        client_id, secret = self._app()
        response = await self.http.request(
            "POST",
            self._url(connection["shop_domain"], "/admin/oauth/access_token"),
            json={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
            },
            headers={"Accept": "application/json"},
            classify=_classify_refresh,
        )
        new, expires_at = _tokens(response, started)
        scope = _scope(response)
        connection = {**connection, "scope": scope or connection.get("scope")}
        return Authorized(new, connection, expires_at)

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
                self._url(shop, f"{base}/shop.json"),
                headers=headers,
                classify=_classify_api,
                limiter=self.limiter,
                limit_key=shop,
                observe=lambda r: self._throttle(shop, r),
            )
            return CheckResult(_rest_metadata(response))
        response = await self.http.request(
            "POST",
            self._url(shop, f"{base}/graphql.json"),
            json={"query": SHOP_QUERY},
            headers=headers,
            classify=_classify_graphql,
            limiter=self.limiter,
            limit_key=shop,
            observe=lambda r: self._throttle(shop, r),
        )
        return CheckResult(_graphql_metadata(response))

    def _throttle(self, shop: str, response: httpx.Response) -> None:
        """Pause this shop's calls before Shopify has to answer 429: when the REST bucket is
        nearly full, or GraphQL has few cost points left, wait for the bucket to drain."""
        settings = self.settings
        used, size = _call_limit(response.headers.get("X-Shopify-Shop-Api-Call-Limit"))
        if size and settings.rest_leak_rate > 0:
            short = settings.rest_reserve_calls - (size - used)
            if short >= 0:
                self.limiter.defer(shop, (short + 1) / settings.rest_leak_rate)
        status = _throttle_status(response)
        if status is not None:
            available, restore_rate = status
            reserve = settings.graphql_reserve_points
            if available < reserve and restore_rate > 0:
                self.limiter.defer(shop, (reserve - available) / restore_rate)

    def _app(self) -> tuple[str, str]:
        if not self.settings.client_id or self.settings.client_secret is None:
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID,
                "the Shopify app is not configured: set CONNECTIONS_SHOPIFY_CLIENT_ID and "
                "CONNECTIONS_SHOPIFY_CLIENT_SECRET",
            )
        return self.settings.client_id, self.settings.client_secret.get_secret_value()

    def _url(self, shop: str, path: str) -> str:
        return self.settings.base_url.format(shop=shop).rstrip("/") + path


def _tokens(response: httpx.Response, started: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Credentials from a token answer; expiry counted from when we asked, to err early."""
    body = json_object(response)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Shopify's token answer held no access token"
        )
    credentials: dict[str, Any] = {"access_token": token}
    expires_at = None
    if isinstance(body.get("expires_in"), int | float):
        expires_at = started + timedelta(seconds=body["expires_in"])
        credentials["expires_at"] = expires_at.isoformat()
    if isinstance(body.get("refresh_token"), str):
        credentials["refresh_token"] = body["refresh_token"]
        lifetime = body.get("refresh_token_expires_in")
        if isinstance(lifetime, int | float):
            credentials["refresh_token_expires_at"] = (
                started + timedelta(seconds=lifetime)
            ).isoformat()
    return credentials, expires_at


def _scope(response: httpx.Response) -> str | None:
    scope = json_object(response).get("scope")
    return scope if isinstance(scope, str) else None


def _call_limit(header: str | None) -> tuple[int, int]:
    """`X-Shopify-Shop-Api-Call-Limit: 32/40` -> (32, 40); (0, 0) when absent or unreadable."""
    if not header or "/" not in header:
        return 0, 0
    used, _, size = header.partition("/")
    try:
        return int(used), int(size)
    except ValueError:
        return 0, 0


def _throttle_status(response: httpx.Response) -> tuple[float, float] | None:
    """GraphQL's (currentlyAvailable, restoreRate), when the answer carries them."""
    if "json" not in response.headers.get("content-type", ""):
        return None
    extensions = json_object(response).get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    status = cost.get("throttleStatus") if isinstance(cost, dict) else None
    if not isinstance(status, dict):
        return None
    available, rate = status.get("currentlyAvailable"), status.get("restoreRate")
    if not isinstance(available, int | float) or not isinstance(rate, int | float):
        return None
    return float(available), float(rate)


def _query_cost(response: httpx.Response) -> float:
    extensions = json_object(response).get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    requested = cost.get("requestedQueryCost") if isinstance(cost, dict) else None
    return float(requested) if isinstance(requested, int | float) else 1.0


# Admin API answers that say what is wrong with the shop or the token (the rest: http.py).
API_FAILURES: dict[int, tuple[ErrorCode, str]] = {
    401: (
        ErrorCode.CREDENTIALS_INVALID,
        "Shopify rejected the access token: it is wrong, expired, or the app was uninstalled",
    ),
    402: (ErrorCode.ACCOUNT_FROZEN, "the Shopify shop is frozen: its bill is unpaid"),
    403: (
        ErrorCode.PERMISSION_MISSING,
        "the Shopify app lacks an access scope this check needs; grant it and reconnect",
    ),
    404: (ErrorCode.CREDENTIALS_INVALID, "Shopify knows no such shop; check the shop domain"),
    423: (
        ErrorCode.ACCOUNT_LOCKED,
        "the Shopify shop is locked; the merchant must contact Shopify support",
    ),
}


def _classify_api(response: httpx.Response) -> ProviderError | None:
    """Shopify's Admin API status codes, the same for REST and GraphQL."""
    status = response.status_code
    if response.is_success:
        return None
    known = API_FAILURES.get(status)
    if known is not None:
        return PermanentFailure(*known)
    common = common_failure(response, "Shopify")
    if common is not None:
        return common
    return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, f"Shopify answered {status}")


def _classify_graphql(response: httpx.Response) -> ProviderError | None:
    """Status codes first; then GraphQL's own errors, which arrive with status 200."""
    failure = _classify_api(response)
    if failure is not None:
        return failure
    errors = json_object(response).get("errors")
    if not errors:
        return None
    codes = {
        str((e.get("extensions") or {}).get("code", "")).upper()
        for e in (errors if isinstance(errors, list) else [])
        if isinstance(e, dict)
    }
    if "THROTTLED" in codes:
        status = _throttle_status(response)
        wait = 1.0
        if status is not None and status[1] > 0:
            wait = max(0.0, (_query_cost(response) - status[0]) / status[1])
        return TemporaryFailure(
            ErrorCode.RATE_LIMITED, "Shopify is throttling our GraphQL calls", retry_after=wait
        )
    if "ACCESS_DENIED" in codes:
        return PermanentFailure(
            ErrorCode.PERMISSION_MISSING,
            "the Shopify app lacks an access scope this check needs; grant it and reconnect",
        )
    if "INTERNAL_SERVER_ERROR" in codes:
        return TemporaryFailure(ErrorCode.PROVIDER_UNAVAILABLE, "Shopify had an internal error")
    return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "Shopify refused the shop query")


def _classify_exchange(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Shopify")
    if common is not None:
        return common
    if oauth_error(response) == "invalid_client":
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Shopify rejected the app's client id or secret"
        )
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        "Shopify refused the authorization code; it may be used or expired, connect again",
    )


def _classify_refresh(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Shopify")
    if common is not None:
        return common
    return PermanentFailure(
        ErrorCode.REFRESH_FAILED,
        "Shopify refused to refresh the access token; connect the shop again",
    )


def _graphql_metadata(response: httpx.Response) -> dict[str, Any]:
    data = json_object(response).get("data")
    shop = data.get("shop") if isinstance(data, dict) else None
    if not isinstance(shop, dict):
        raise TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE, "Shopify's answer held no shop; try again"
        )
    plan = shop.get("plan") or {}
    return {
        "shop_name": shop.get("name"),
        "plan": plan.get("displayName") if isinstance(plan, dict) else None,
        "currency": shop.get("currencyCode"),
        "myshopify_domain": shop.get("myshopifyDomain"),
    }


def _rest_metadata(response: httpx.Response) -> dict[str, Any]:
    shop = json_object(response).get("shop")
    if not isinstance(shop, dict):
        raise TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE, "Shopify's answer held no shop; try again"
        )
    return {
        "shop_name": shop.get("name"),
        "plan": shop.get("plan_display_name"),
        "currency": shop.get("currency"),
        "myshopify_domain": shop.get("myshopify_domain"),
    }
