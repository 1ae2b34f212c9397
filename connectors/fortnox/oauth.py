"""Fortnox's OAuth 2 pieces: the authorize URL, the token endpoint with Basic client auth (code
exchange and the single-use, rotating refresh) and revocation, each answer classified."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError
from connectors.fortnox.settings import FortnoxSettings
from connectors.http import HttpLayer, common_failure, json_object, oauth_error

Classifier = Callable[[httpx.Response], ProviderError | None]
NOT_CONFIGURED = (
    "the Fortnox integration is not configured: set CONNECTIONS_FORTNOX_CLIENT_ID "
    "and CONNECTIONS_FORTNOX_CLIENT_SECRET"
)
# Access tokens live an hour; an answer without `expires_in` is taken to mean that.
DEFAULT_LIFETIME = 3600


def basic_auth(client_id: str, client_secret: str) -> str:
    """Fortnox's token endpoint credentials: `Basic base64(client_id:client_secret)`."""
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def authorize_url(settings: FortnoxSettings, *, state: str, redirect_uri: str) -> str:
    """Where a browser lets a Fortnox user grant the integration access to a company; offline
    access, so the code exchange yields a refresh token."""
    if not settings.client_id:
        raise PermanentFailure(ErrorCode.CREDENTIALS_INVALID, NOT_CONFIGURED)
    query = urlencode(
        {
            "client_id": settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": settings.scopes,
            "state": state,
            "access_type": "offline",
            "response_type": "code",
        },
        quote_via=quote,  # scopes are space-separated: %20, not "+"
    )
    return f"{settings.auth_base_url.rstrip('/')}/oauth-v1/auth?{query}"


async def post_form(
    http: HttpLayer,
    settings: FortnoxSettings,
    path: str,
    form: dict[str, str],
    classify: Classifier,
) -> httpx.Response:
    """A form POST to the OAuth host, authenticated as the integration (Basic)."""
    if not settings.client_id or settings.client_secret is None:
        raise PermanentFailure(ErrorCode.CREDENTIALS_INVALID, NOT_CONFIGURED)
    secret = settings.client_secret.get_secret_value()
    return await http.request(
        "POST",
        f"{settings.auth_base_url.rstrip('/')}{path}",
        data=form,
        headers={
            "Authorization": basic_auth(settings.client_id, secret),
            "Accept": "application/json",
        },
        classify=classify,
    )


def classify_exchange(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Fortnox")
    if common is not None:
        return common
    if oauth_error(response) == "invalid_client" or response.status_code == 401:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Fortnox rejected the integration's client id or secret"
        )
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        "Fortnox refused the authorization code; it may be used, expired (10 minutes) or issued "
        "for another redirect_uri; connect again",
    )


def classify_refresh(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "Fortnox")
    if common is not None:
        return common
    if oauth_error(response) == "invalid_client":
        return PermanentFailure(
            ErrorCode.REFRESH_FAILED,
            "Fortnox rejected the integration's client id or secret while refreshing",
        )
    return PermanentFailure(
        ErrorCode.REFRESH_FAILED,
        "Fortnox refused the refresh token (used, revoked or older than 45 days); "
        "connect the company again",
    )


def classify_revoke(response: httpx.Response) -> ProviderError | None:
    """A token Fortnox no longer knows is as revoked as it gets (RFC 7009 answers 200 for it);
    only a refused client is a failure a person must fix."""
    if response.is_success:
        return None
    common = common_failure(response, "Fortnox")
    if common is not None:
        return common
    error = oauth_error(response)
    if response.status_code == 400 and error in ("invalid_grant", "invalid_token"):
        return None
    if error == "invalid_client" or response.status_code == 401:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "Fortnox rejected the integration's client id or secret while revoking",
        )
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        f"Fortnox refused to revoke the refresh token ({response.status_code})",
    )


def tokens(response: httpx.Response, started: datetime) -> tuple[dict[str, Any], datetime]:
    """Credentials from a token answer; expiry counted from when we asked, to err early."""
    body = json_object(response)
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Fortnox's token answer lacked the tokens"
        )
    lifetime = body.get("expires_in")
    expires_at = started + timedelta(
        seconds=lifetime if isinstance(lifetime, int | float) else DEFAULT_LIFETIME
    )
    credentials = {
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": expires_at.isoformat(),
    }
    return credentials, expires_at
