"""Shopify's OAuth: the authorize link, the callback's signature, the token answers of a code
exchange or a refresh, and what the token and permission endpoints' refusals mean."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError
from connectors.http import common_failure, json_object, oauth_error
from connectors.shopify.check import classify_api
from connectors.shopify.settings import ShopifySettings, shop_domain


def app_credentials(settings: ShopifySettings) -> tuple[str, str]:
    """The app's client id and secret; credentials_invalid when the app is not configured."""
    if not settings.client_id or settings.client_secret is None:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "the Shopify app is not configured: set CONNECTIONS_SHOPIFY_CLIENT_ID and "
            "CONNECTIONS_SHOPIFY_CLIENT_SECRET",
        )
    return settings.client_id, settings.client_secret.get_secret_value()


def shop_url(settings: ShopifySettings, shop: str, path: str) -> str:
    return settings.base_url.format(shop=shop).rstrip("/") + path


def authorize_link(
    settings: ShopifySettings, *, state: str, redirect_uri: str, shop: str | None
) -> str:
    """`{base}/admin/oauth/authorize?client_id&scope&redirect_uri&state` for the shop; the
    shop must be a `<name>.myshopify.com` domain, since it becomes the link's host."""
    client_id, _ = app_credentials(settings)
    if not shop:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "connecting a Shopify account needs the shop's <name>.myshopify.com domain",
        )
    try:
        domain = shop_domain(shop)
    except ValueError:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "the shop domain must be the shop's <name>.myshopify.com domain",
        ) from None
    query = {
        "client_id": client_id,
        "scope": ",".join(settings.scope_list()),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return shop_url(settings, domain, "/admin/oauth/authorize") + "?" + urlencode(query)


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


def tokens(response: httpx.Response, started: datetime) -> tuple[dict[str, Any], datetime | None]:
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


def granted_scope(response: httpx.Response) -> str | None:
    scope = json_object(response).get("scope")
    return scope if isinstance(scope, str) else None


def classify_exchange(response: httpx.Response) -> ProviderError | None:
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


def classify_refresh(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Shopify")
    if common is not None:
        return common
    return PermanentFailure(
        ErrorCode.REFRESH_FAILED,
        "Shopify refused to refresh the access token; connect the shop again",
    )


def classify_revoke(response: httpx.Response) -> ProviderError | None:
    """A 401 is accepted: the token is dead already, so the app's access is gone (uninstalled
    or revoked before); the caller made sure the token had not merely expired."""
    if response.status_code == 401:
        return None
    return classify_api(response)
