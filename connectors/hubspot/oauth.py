"""HubSpot's OAuth (the 2026-03 endpoints): the authorize link, the token answers of a code
exchange or a refresh, and what the token and revoke endpoints' refusals mean.

The refresh token is the only sign of an uninstall HubSpot gives (its webhooks have no uninstall
event): a refresh refused with `invalid_grant` / `BAD_REFRESH_TOKEN` means the app's access to the
portal is gone, and the account is disconnected."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from connectors.base import ErrorCode, PermanentFailure, ProviderError
from connectors.http import common_failure, json_object, oauth_error
from connectors.hubspot.check import portal_text
from connectors.hubspot.settings import HubSpotSettings

REVOKED = (
    "HubSpot refused the refresh token: the app was uninstalled from the HubSpot portal or its "
    "access was revoked; connect the HubSpot account again"
)


def app_credentials(settings: HubSpotSettings) -> tuple[str, str]:
    """The app's client id and secret; credentials_invalid when the app is not configured."""
    if not settings.client_id or settings.client_secret is None:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "the HubSpot app is not configured: set CONNECTIONS_HUBSPOT_CLIENT_ID and "
            "CONNECTIONS_HUBSPOT_CLIENT_SECRET",
        )
    return settings.client_id, settings.client_secret.get_secret_value()


def authorize_link(settings: HubSpotSettings, *, state: str, redirect_uri: str) -> str:
    """`{auth}/oauth/authorize?client_id&scope&redirect_uri&state`, the scopes space-separated
    and every value percent-encoded as HubSpot's own helper does (`quote`, nothing kept safe)."""
    client_id, _ = app_credentials(settings)
    query = {
        "client_id": client_id,
        "scope": " ".join(settings.scope_list()),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    if settings.optional_scope_list():
        query["optional_scope"] = " ".join(settings.optional_scope_list())
    base = settings.auth_base_url.rstrip("/") + settings.authorize_path
    return base + "?" + urlencode(query, quote_via=quote)


def api_url(settings: HubSpotSettings, path: str) -> str:
    return settings.api_base_url.rstrip("/") + path


def tokens(
    response: httpx.Response,
    started: datetime,
    settings: HubSpotSettings,
    *,
    failure: ErrorCode,
    previous_refresh: str | None = None,
) -> tuple[dict[str, Any], datetime]:
    """Credentials from a token answer. The expiry follows `expires_in` (30 minutes today, six
    hours before) counted from when we asked, to err early. HubSpot does not say whether refresh
    tokens rotate, so whatever refresh token an answer holds is kept, else the previous one."""
    body = json_object(response)
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise PermanentFailure(failure, "HubSpot's token answer held no access token")
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        refresh = previous_refresh
    if not refresh:
        raise PermanentFailure(failure, "HubSpot's token answer held no refresh token")
    lifetime = body.get("expires_in")
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = settings.token_lifetime_seconds
    expires_at = started + timedelta(seconds=lifetime)
    credentials = {
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": expires_at.isoformat(),
    }
    return credentials, expires_at


def granted(response: httpx.Response) -> tuple[str | None, list[str] | None]:
    """The portal (`hub_id`) and the scopes a token answer names, where it names them."""
    body = json_object(response)
    scopes = body.get("scopes")
    if isinstance(scopes, str):
        scopes = scopes.split()
    elif isinstance(body.get("scope"), str):
        scopes = body["scope"].split()
    if isinstance(scopes, list):
        scopes = [s for s in scopes if isinstance(s, str)]
    else:
        scopes = None
    return portal_text(body.get("hub_id")), scopes


def _refusal(response: httpx.Response) -> str:
    """The OAuth `error` of a refusal, or the older `status` (`BAD_REFRESH_TOKEN`), lower-case."""
    return oauth_error(response) or str(json_object(response).get("status") or "").lower()


def classify_exchange(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "HubSpot")
    if common is not None:
        return common
    if _refusal(response) in {"invalid_client", "bad_client_id"}:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "HubSpot rejected the app's client id or secret"
        )
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        "HubSpot refused the authorization code; it may be used, expired, or issued for another "
        "redirect_uri; connect again",
    )


def classify_refresh(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    common = common_failure(response, "HubSpot")
    if common is not None:
        return common
    refusal = _refusal(response)
    if refusal in {"invalid_grant", "bad_refresh_token"}:
        return PermanentFailure(ErrorCode.CONNECTION_REVOKED, REVOKED)
    if refusal in {"invalid_client", "bad_client_id"}:
        return PermanentFailure(
            ErrorCode.REFRESH_FAILED,
            "HubSpot rejected the app's client id or secret while refreshing; check "
            "CONNECTIONS_HUBSPOT_CLIENT_ID and CONNECTIONS_HUBSPOT_CLIENT_SECRET",
        )
    return PermanentFailure(
        ErrorCode.REFRESH_FAILED,
        f"HubSpot refused to refresh the access token ({response.status_code}); connect the "
        "HubSpot account again",
    )


def classify_revoke(response: httpx.Response) -> ProviderError | None:
    """A refresh token HubSpot no longer knows is accepted: the access it gave is gone already
    (uninstalled, or revoked before), which is what revoking wants (RFC 7009 answers the same)."""
    if response.is_success:
        return None
    common = common_failure(response, "HubSpot")
    if common is not None:
        return common
    refusal = _refusal(response)
    if refusal in {"invalid_grant", "bad_refresh_token", "invalid_token"}:
        return None
    if refusal in {"invalid_client", "bad_client_id"}:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            "HubSpot rejected the app's client id or secret; the token was not revoked",
        )
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        f"HubSpot refused to revoke the token ({response.status_code})",
    )
