"""The Fortnox connector: a company connected through OAuth, with one-hour access tokens and
single-use, rotating refresh tokens, checked against `/3/companyinformation` within Fortnox's
rate limit, and its failures sorted into the contract's error codes."""

from __future__ import annotations

import builtins
import hashlib
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
from connectors.fortnox import oauth
from connectors.fortnox.settings import FortnoxFields, FortnoxSettings
from connectors.http import HttpLayer, common_failure, json_object, retry_after_seconds
from connectors.oauth import can_refresh, expires_soon

# Fortnox's ErrorInformation codes we know, by the contract's error code. Data, so that a code
# learned later is one line here.
ERROR_CODES: dict[int, ErrorCode] = {
    2000310: ErrorCode.CREDENTIALS_INVALID,  # invalid access token
    2000311: ErrorCode.CREDENTIALS_INVALID,  # invalid client secret / token
    2001101: ErrorCode.LICENCE_MISSING,  # no licence for the scope
    2001103: ErrorCode.LICENCE_MISSING,  # no API licence
    1000003: ErrorCode.PROVIDER_UNAVAILABLE,  # Fortnox system error
}
MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.CREDENTIALS_INVALID: "Fortnox rejected the access token; connect the company again",
    ErrorCode.LICENCE_MISSING: (
        "the Fortnox company lacks the licence this integration needs (the API licence or the "
        "module for a scope); add it in Fortnox"
    ),
    ErrorCode.PROVIDER_UNAVAILABLE: "Fortnox reported a system error; it is having trouble",
    ErrorCode.PERMISSION_MISSING: (
        "the Fortnox integration lacks a permission (scope) this check needs; connect again"
    ),
}


class FortnoxConnector:
    type: ClassVar[str] = "fortnox"
    credentials_model: ClassVar[builtins.type[BaseModel]] = FortnoxFields

    def __init__(self, settings: FortnoxSettings, http: HttpLayer, clock: Clock = utc_now):
        self.settings = settings
        self.http = http
        self.clock = clock
        self.limiter = http.limiter(
            "fortnox", settings.requests_per_window, settings.window_seconds
        )

    def authorize_url(
        self, *, state: str, redirect_uri: str, shop_domain: str | None = None
    ) -> str:
        return oauth.authorize_url(self.settings, state=state, redirect_uri=redirect_uri)

    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, FortnoxFields)
        started = self.clock()
        response = await oauth.post_form(
            self.http,
            self.settings,
            "/oauth-v1/token",
            {
                "grant_type": "authorization_code",
                "code": fields.code.get_secret_value(),
                "redirect_uri": fields.redirect_uri,
            },
            oauth.classify_exchange,
        )
        credentials, expires_at = oauth.tokens(response, started)
        # The company names the connection and keys the per-tenant rate limit.
        company = await self._company(credentials["access_token"], _token_key(credentials))
        connection = {
            "company_name": company.get("CompanyName"),
            "organization_number": company.get("OrganizationNumber"),
            "scope": json_object(response).get("scope"),
        }
        return Authorized(credentials, connection, expires_at)

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        return expires_soon(credentials, now, self.settings.refresh_margin_seconds)

    def can_refresh(self, credentials: dict[str, Any]) -> bool:
        return can_refresh(credentials)

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        """One use of the refresh token: Fortnox invalidates it at once, so the caller must store
        the new pair before anyone else refreshes (it holds the account's lock)."""
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            raise PermanentFailure(
                ErrorCode.REFRESH_FAILED, "no Fortnox refresh token is stored; connect again"
            )
        started = self.clock()
        response = await oauth.post_form(
            self.http,
            self.settings,
            "/oauth-v1/token",
            {"grant_type": "refresh_token", "refresh_token": refresh_token},
            oauth.classify_refresh,
        )
        new, expires_at = oauth.tokens(response, started)
        return Authorized(new, connection, expires_at)

    async def revoke(self, credentials: dict[str, Any], connection: dict[str, Any]) -> bool:
        """Revoke the refresh token (and with it the access Fortnox granted through it); False
        when none is stored, as there is then nothing Fortnox can revoke."""
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            return False
        await oauth.post_form(
            self.http,
            self.settings,
            "/oauth-v1/revoke",
            {"token": refresh_token, "token_type_hint": "refresh_token"},
            oauth.classify_revoke,
        )
        return True

    def identity(self, connection: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        """The company's organisation number."""
        number = connection.get("organization_number") or metadata.get("organization_number")
        return str(number) if number else None

    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        key = connection.get("organization_number") or _token_key(credentials)
        company = await self._company(credentials["access_token"], str(key))
        return CheckResult(
            {
                "company_name": company.get("CompanyName"),
                "organization_number": company.get("OrganizationNumber"),
            }
        )

    async def _company(self, access_token: str, limit_key: str) -> dict[str, Any]:
        response = await self.http.request(
            "GET",
            f"{self.settings.api_base_url.rstrip('/')}/3/companyinformation",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            classify=self._classify_api,
            limiter=self.limiter,
            limit_key=limit_key,
        )
        company = json_object(response).get("CompanyInformation")
        if not isinstance(company, dict):
            raise TemporaryFailure(
                ErrorCode.PROVIDER_UNAVAILABLE, "Fortnox's answer held no company information"
            )
        return company

    def _classify_api(self, response: httpx.Response) -> ProviderError | None:
        if response.is_success:
            return None
        if response.status_code == 429:
            return TemporaryFailure(
                ErrorCode.RATE_LIMITED,
                "Fortnox is rate limiting our calls (25 per 5 seconds per company)",
                retry_after=retry_after_seconds(response, self.settings.rate_limited_wait),
            )
        number, text = error_information(response)
        code = ERROR_CODES.get(number) if number is not None else None
        if code is not None:
            kind = TemporaryFailure if code is ErrorCode.PROVIDER_UNAVAILABLE else PermanentFailure
            return kind(code, MESSAGES[code])
        common = common_failure(response, "Fortnox")
        if common is not None:
            return common
        if response.status_code == 401:
            return PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID, MESSAGES[ErrorCode.CREDENTIALS_INVALID]
            )
        if response.status_code == 403:
            return PermanentFailure(
                ErrorCode.PERMISSION_MISSING, MESSAGES[ErrorCode.PERMISSION_MISSING]
            )
        detail = f" (code {number}: {text})" if number is not None else ""
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID,
            f"Fortnox refused the check with {response.status_code}{detail}"[:300],
        )


def error_information(response: httpx.Response) -> tuple[int | None, str]:
    """(code, message) from `{"ErrorInformation": {"error", "message", "code"}}`, whatever the
    casing of its keys; (None, "") when the body holds none."""
    body = json_object(response)
    info = next((v for k, v in body.items() if k.lower() == "errorinformation"), None)
    if not isinstance(info, dict):
        return None, ""
    fields = {str(k).lower(): v for k, v in info.items()}
    raw = fields.get("code")
    try:
        number = int(raw) if isinstance(raw, int | str) else None
    except ValueError:
        number = None
    return number, str(fields.get("message") or "")


def _token_key(credentials: dict[str, Any]) -> str:
    """A limiter key before the company is known: a digest, so no token sits in memory twice."""
    return hashlib.sha256(str(credentials.get("access_token")).encode()).hexdigest()[:16]
