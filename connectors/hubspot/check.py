"""HubSpot's health call (account details) and what its answers mean: the error classification of
every API call, the account metadata, and the rate-limit headers that pause a portal before
HubSpot has to answer 429. Every error-body field is optional, as HubSpot asks of its clients."""

from __future__ import annotations

import math
from typing import Any

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import json_object, retry_after_seconds
from connectors.hubspot.settings import HubSpotSettings
from connectors.limiter import SlidingWindowLimiter

# The context keys HubSpot has been seen to name missing scopes under (the docs' example shows
# `missingScopes`; a secondary source `requiredGranularScopes`).
SCOPE_KEYS = ("missingScopes", "requiredGranularScopes", "requiredScopes")
GATEWAY_TIMEOUTS = frozenset({502, 504})

INVALID_TOKEN = (
    "HubSpot rejected the access token: it is wrong, or the app was uninstalled from the portal; "
    "connect the HubSpot account again"
)
EXPIRED_TOKEN = "HubSpot says the access token has expired; it must be refreshed"


def classify_api(response: httpx.Response, settings: HubSpotSettings) -> ProviderError | None:
    """HubSpot's API status codes as the contract's failures."""
    status = response.status_code
    if response.is_success:
        return None
    body = json_object(response)
    category = str(body.get("category") or "").upper()
    if status == 401:
        if category == "EXPIRED_AUTHENTICATION":
            return PermanentFailure(ErrorCode.CREDENTIALS_EXPIRED, EXPIRED_TOKEN)
        return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, INVALID_TOKEN)
    if status == 403:
        return PermanentFailure(ErrorCode.PERMISSION_MISSING, _missing_scopes_message(body))
    if status == 423:
        # A lock on the portal's data that lasts two seconds: this portal's contention, not an
        # outage of HubSpot, so it must not count towards an incident.
        return TemporaryFailure(
            ErrorCode.RATE_LIMITED,
            "HubSpot has locked the portal's data for a moment (423)",
            retry_after=settings.locked_wait_seconds,
        )
    if status == 429:
        return _rate_limited(response, body, settings)
    if status == 477:
        return TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE,
            "HubSpot is migrating the portal's data (477); calls resume when it is done",
            retry_after=retry_after_seconds(response, settings.migration_wait_seconds),
        )
    if status >= 500:
        return TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"HubSpot answered {status}; it is having trouble",
            retry_after=settings.gateway_timeout_wait_seconds
            if status in GATEWAY_TIMEOUTS
            else None,
        )
    detail = body.get("message")
    words = f": {detail}" if isinstance(detail, str) and detail else ""
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID, f"HubSpot refused the call with {status}{words}"[:300]
    )


def _rate_limited(
    response: httpx.Response, body: dict[str, Any], settings: HubSpotSettings
) -> TemporaryFailure:
    """A 429 by its `policyName`: the rolling ten-second window is over within the window, a
    per-second one within a second, and a daily one not soon (HubSpot sends no Retry-After)."""
    policy = str(body.get("policyName") or "").upper()
    message = str(body.get("message") or "").lower()
    if policy == "DAILY":
        wait = settings.daily_limit_wait_seconds
    elif policy == "TEN_SECONDLY_ROLLING":
        wait = settings.window_seconds
    elif policy == "SECONDLY" or "secondly limit" in message:
        wait = settings.secondly_wait_seconds
    else:
        wait = retry_after_seconds(response, settings.window_seconds)
    named = f" ({policy})" if policy else ""
    return TemporaryFailure(
        ErrorCode.RATE_LIMITED, f"HubSpot is rate limiting our calls{named}", retry_after=wait
    )


def missing_scopes(body: dict[str, Any]) -> list[str]:
    """The scopes an error body names as missing, from its `context` or its `errors[].context`."""
    contexts = [body.get("context")]
    errors = body.get("errors")
    if isinstance(errors, list):
        contexts += [e.get("context") for e in errors if isinstance(e, dict)]
    found: list[str] = []
    for context in contexts:
        if not isinstance(context, dict):
            continue
        for key in SCOPE_KEYS:
            values = context.get(key)
            if isinstance(values, list):
                found += [v for v in values if isinstance(v, str) and v not in found]
    return found


def _missing_scopes_message(body: dict[str, Any]) -> str:
    scopes = missing_scopes(body)
    named = f" ({', '.join(scopes)})"[:200] if scopes else ""
    return (
        f"the HubSpot app lacks a scope this call needs{named}; add it to the app's scopes and "
        "connect the HubSpot account again"
    )


def account_metadata(response: httpx.Response) -> dict[str, Any]:
    """The account details as metadata; the portal id as text, as routing keys are."""
    body = json_object(response)
    portal = portal_text(body.get("portalId"))
    if portal is None:
        raise TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE, "HubSpot's account details held no portal id"
        )
    return {
        "portal_id": portal,
        "account_type": body.get("accountType"),
        "time_zone": body.get("timeZone"),
        "currency": body.get("companyCurrency"),
        "ui_domain": body.get("uiDomain"),
        "data_hosting_location": body.get("dataHostingLocation"),
    }


def portal_text(value: Any) -> str | None:
    """A portal (hub) id as its decimal text, from a number or a string of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**19:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        return str(int(value)) if int(value) > 0 else None
    return None


def throttle(
    limiter: SlidingWindowLimiter, key: str, response: httpx.Response, settings: HubSpotSettings
) -> None:
    """Pause the portal's calls when HubSpot says none remain in its window, so the next call
    waits for the window instead of meeting a 429."""
    headers = response.headers
    remaining = _number(headers.get("X-HubSpot-RateLimit-Remaining"))
    if remaining is not None and remaining <= 0:
        interval = _number(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds"))
        limiter.defer(key, interval / 1000 if interval else settings.window_seconds)
    # Deprecated, but some answers still carry it.
    secondly = _number(headers.get("X-HubSpot-RateLimit-Secondly-Remaining"))
    if secondly is not None and secondly <= 0:
        limiter.defer(key, settings.secondly_wait_seconds)


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
