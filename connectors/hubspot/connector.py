"""HubSpot: a portal connected through OAuth, with access tokens of about 30 minutes refreshed ahead
of expiry, checked against its account details within the 110 calls per 10 s each portal allows."""

from __future__ import annotations

import builtins
import functools
import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel

from connectors.base import (
    Authorized,
    CheckResult,
    Clock,
    ErrorCode,
    PermanentFailure,
    ProviderError,
    TemporaryFailure,
    utc_now,
)
from connectors.http import HttpLayer
from connectors.hubspot.check import account_metadata, classify_api, throttle
from connectors.hubspot.oauth import (
    api_url,
    app_credentials,
    authorize_link,
    classify_exchange,
    classify_refresh,
    classify_revoke,
    granted,
    tokens,
)
from connectors.hubspot.settings import HubSpotFields, HubSpotSettings
from connectors.oauth import can_refresh, expires_soon


class HubSpotConnector:
    type: ClassVar[str] = "hubspot"
    credentials_model: ClassVar[builtins.type[BaseModel]] = HubSpotFields

    def __init__(self, settings: HubSpotSettings, http: HttpLayer, clock: Clock = utc_now):
        self.settings = settings
        self.http = http
        self.clock = clock
        # Keyed by portal: HubSpot's limit is per installing account.
        self.limiter = http.limiter(
            "hubspot", settings.requests_per_window, settings.window_seconds
        )
        self._classify = functools.partial(classify_api, settings=settings)

    def authorize_url(
        self, *, state: str, redirect_uri: str, shop_domain: str | None = None
    ) -> str:
        return authorize_link(self.settings, state=state, redirect_uri=redirect_uri)

    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, HubSpotFields)
        client_id, secret = app_credentials(self.settings)
        started = self.clock()
        response = await self._token(
            {
                "grant_type": "authorization_code",
                "code": fields.code.get_secret_value(),
                "redirect_uri": fields.redirect_uri,
                "client_id": client_id,
                "client_secret": secret,
            },
            classify_exchange,
        )
        credentials, expires_at = tokens(
            response, started, self.settings, failure=ErrorCode.CREDENTIALS_INVALID
        )
        portal, scopes = granted(response)
        if portal is None:  # an answer without `hub_id`: the account details name the portal
            details = await self._details(credentials["access_token"], token_key(credentials))
            portal = details["portal_id"]
        # Consent needs every required scope, so what we asked for is granted when none is named.
        connection = {
            "portal_id": portal,
            "scopes": scopes if scopes is not None else self.settings.scope_list(),
        }
        return Authorized(credentials, connection, expires_at)

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        return expires_soon(credentials, now, self.settings.refresh_margin_seconds)

    def can_refresh(self, credentials: dict[str, Any]) -> bool:
        return can_refresh(credentials)

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        """Exchange the refresh token. HubSpot may or may not rotate it (undocumented), so the
        caller stores the answer's before anyone else refreshes (it holds the account's lock)."""
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            raise PermanentFailure(
                ErrorCode.REFRESH_FAILED, "no HubSpot refresh token is stored; connect again"
            )
        client_id, secret = app_credentials(self.settings)
        started = self.clock()
        response = await self._token(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
                "client_secret": secret,
            },
            classify_refresh,
        )
        new, expires_at = tokens(
            response,
            started,
            self.settings,
            failure=ErrorCode.REFRESH_FAILED,
            previous_refresh=refresh_token,
        )
        _, scopes = granted(response)
        changed = {"scopes": scopes} if scopes is not None else {}
        return Authorized(new, {**connection, **changed}, expires_at)

    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        portal = connection.get("portal_id")
        metadata = await self._details(
            credentials["access_token"], str(portal) if portal else token_key(credentials)
        )
        if portal and metadata["portal_id"] != str(portal):
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID,
                f"the token names another HubSpot portal ({metadata['portal_id']}) than this "
                f"account's ({portal}); connect the account's own portal again",
            )
        return CheckResult(metadata)

    def identity(self, connection: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        portal = connection.get("portal_id") or metadata.get("portal_id")
        return str(portal) if portal else None

    async def revoke(self, credentials: dict[str, Any], connection: dict[str, Any]) -> bool:
        """Revoke the refresh token, which ends the app's access through it; the access token
        lives out its half hour. False when no refresh token is stored."""
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            return False
        client_id, secret = app_credentials(self.settings)
        await self.http.request(
            "POST",
            api_url(self.settings, self.settings.revoke_path),
            data={
                "token": refresh_token,
                "token_type_hint": "refresh_token",
                "client_id": client_id,
                "client_secret": secret,
            },
            headers={"Accept": "application/json"},
            classify=classify_revoke,
        )
        return True

    async def _details(self, access_token: str, key: str) -> dict[str, Any]:
        paused = self.limiter.paused_for(key)
        if paused > self.settings.max_limit_wait_seconds:
            # A daily limit or a migration: waiting it out would hold a worker for hours.
            raise TemporaryFailure(
                ErrorCode.RATE_LIMITED,
                "HubSpot asked us to leave this portal alone for a while",
                retry_after=paused,
            )
        response = await self.http.request(
            "GET",
            api_url(self.settings, self.settings.details_path),
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            classify=self._classify,
            limiter=self.limiter,
            limit_key=key,
            observe=lambda r: throttle(self.limiter, key, r, self.settings),
        )
        return account_metadata(response)

    async def _token(
        self, form: dict[str, str], classify: Callable[[httpx.Response], ProviderError | None]
    ) -> httpx.Response:
        return await self.http.request(
            "POST",
            api_url(self.settings, self.settings.token_path),
            data=form,
            headers={"Accept": "application/json"},
            classify=classify,
        )


def token_key(credentials: dict[str, Any]) -> str:
    """A limiter key before the portal is known: a digest, so no token sits in memory twice."""
    return hashlib.sha256(str(credentials.get("access_token")).encode()).hexdigest()[:16]
