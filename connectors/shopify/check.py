"""What Shopify's Admin API answers mean: the status-failure table, GraphQL's own errors (its
throttling among them), the leaky-bucket and cost headers, and the shop the health check reads."""

from __future__ import annotations

from typing import Any

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import common_failure, json_object

SHOP_QUERY = "{ shop { name plan { displayName } currencyCode myshopifyDomain } }"

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


def classify_api(response: httpx.Response) -> ProviderError | None:
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


def classify_graphql(response: httpx.Response) -> ProviderError | None:
    """Status codes first; then GraphQL's own errors, which arrive with status 200."""
    failure = classify_api(response)
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
        status = throttle_status(response)
        wait = 1.0
        if status is not None and status[1] > 0:
            wait = max(0.0, (query_cost(response) - status[0]) / status[1])
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


def call_limit(header: str | None) -> tuple[int, int]:
    """`X-Shopify-Shop-Api-Call-Limit: 32/40` -> (32, 40); (0, 0) when absent or unreadable."""
    if not header or "/" not in header:
        return 0, 0
    used, _, size = header.partition("/")
    try:
        return int(used), int(size)
    except ValueError:
        return 0, 0


def throttle_status(response: httpx.Response) -> tuple[float, float] | None:
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


def query_cost(response: httpx.Response) -> float:
    extensions = json_object(response).get("extensions")
    cost = extensions.get("cost") if isinstance(extensions, dict) else None
    requested = cost.get("requestedQueryCost") if isinstance(cost, dict) else None
    return float(requested) if isinstance(requested, int | float) else 1.0


def graphql_metadata(response: httpx.Response) -> dict[str, Any]:
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


def rest_metadata(response: httpx.Response) -> dict[str, Any]:
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
