"""Stripe Connect's OAuth: the authorize URL, the code exchange and the deauthorization, each made
with the platform's key (Connect grants do not expire, so there is no refresh)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx

from connectors.base import Authorized, ErrorCode, PermanentFailure, ProviderError
from connectors.http import (
    HttpLayer,
    SlidingWindowLimiter,
    common_failure,
    json_object,
    oauth_error,
)
from connectors.stripe.check import error_message, scrub_keys
from connectors.stripe.settings import ACCOUNT_ID, StripeSettings

# Stripe's `invalid_client` answer to a deauthorization also covers a wrong client id; only
# this wording says the account is no longer connected, which is what revoking wanted.
NOT_CONNECTED = re.compile(r"not connected|account does not exist", re.I)
LIMIT_KEY = "platform"  # the platform's own calls count against one limiter key


def platform_key(settings: StripeSettings) -> str:
    if settings.platform_key is None:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "Stripe Connect is not configured: set CONNECTIONS_STRIPE_PLATFORM_KEY",
        )
    return settings.platform_key.get_secret_value()


def client_id(settings: StripeSettings) -> str:
    if not settings.connect_client_id:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "Stripe Connect is not configured: set CONNECTIONS_STRIPE_CONNECT_CLIENT_ID "
            "(the platform's ca_... client id)",
        )
    return settings.connect_client_id


def authorize_url(settings: StripeSettings, *, state: str, redirect_uri: str) -> str:
    """Where a browser connects its Stripe account to the platform (PermanentFailure when
    Connect is not configured)."""
    query = {
        "response_type": "code",
        "client_id": client_id(settings),
        "scope": "read_write",
        "redirect_uri": redirect_uri,
        "state": state,
    }
    # The code the browser brings back is exchanged with the platform key: without one, the
    # authorization could not finish, so it does not start.
    platform_key(settings)
    return f"{settings.connect_base_url}/oauth/authorize?{urlencode(query)}"


async def exchange_code(
    http: HttpLayer, settings: StripeSettings, limiter: SlidingWindowLimiter, code: str
) -> Authorized:
    """The connected account a Connect authorization code names (codes are single use)."""
    response = await http.request(
        "POST",
        f"{settings.connect_base_url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code},
        headers={"Authorization": f"Bearer {platform_key(settings)}"},
        classify=classify_token,
        limiter=limiter,
        limit_key=LIMIT_KEY,
    )
    body = json_object(response)
    account_id = body.get("stripe_user_id")
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Stripe's token answer named no connected account"
        )
    return Authorized(
        {"refresh_token": body["refresh_token"]} if body.get("refresh_token") else {},
        {"mode": "connect", "stripe_account_id": account_id, "scope": body.get("scope")},
    )


async def deauthorize(
    http: HttpLayer, settings: StripeSettings, limiter: SlidingWindowLimiter, account_id: str
) -> bool:
    """Disconnect `account_id` from the platform; True also when it already was."""
    await http.request(
        "POST",
        f"{settings.connect_base_url}/oauth/deauthorize",
        data={"client_id": client_id(settings), "stripe_user_id": account_id},
        headers={"Authorization": f"Bearer {platform_key(settings)}"},
        classify=classify_deauthorize,
        limiter=limiter,
        limit_key=LIMIT_KEY,
    )
    return True


def classify_token(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Stripe Connect")
    if common is not None:
        return common
    if response.status_code == 401:
        return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "Stripe rejected the platform key")
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        "Stripe refused the authorization code; it may be used or expired, connect again",
    )


def classify_deauthorize(response: httpx.Response) -> ProviderError | None:
    """None when the account is disconnected now, whether by this call or before it."""
    if response.is_success:
        return None
    common = common_failure(response, "Stripe Connect")
    if common is not None:
        return common
    message = error_message(response)
    if oauth_error(response) == "invalid_client":
        if NOT_CONNECTED.search(message):
            return None
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "Stripe does not know the platform's client id in this mode (live or test); "
            "check CONNECTIONS_STRIPE_CONNECT_CLIENT_ID",
        )
    if response.status_code == 401:
        return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "Stripe rejected the platform key")
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        scrub_keys(f"Stripe refused the deauthorization ({response.status_code}): {message}")[:300],
    )
