"""Fortnox: a company connected through OAuth, with one-hour access tokens and single-use,
rotating refresh tokens, checked against `/3/companyinformation` within Fortnox's rate limit."""

from __future__ import annotations

import base64
import builtins
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

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
from connectors.http import HttpLayer, common_failure, json_object, oauth_error, retry_after_seconds

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


class FortnoxSettings(BaseModel):
    api_base_url: str = "https://api.fortnox.se"
    auth_base_url: str = "https://apps.fortnox.se"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # 25 requests per 5 s sliding window, per client and tenant.
    requests_per_window: int = 25
    window_seconds: float = 5.0
    # Fortnox's 429 names no wait; a full window has certainly passed after this long.
    rate_limited_wait: float = 5.0
    refresh_margin_seconds: float = 300.0


class FortnoxFields(BaseModel):
    """`code` and the `redirect_uri` it was issued for (Fortnox checks that they match)."""

    model_config = ConfigDict(extra="forbid")

    code: SecretStr
    redirect_uri: str

    @field_validator("code")
    @classmethod
    def _code_given(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must be the authorization code from Fortnox's redirect")
        return value

    @field_validator("redirect_uri")
    @classmethod
    def _redirect_shape(cls, value: str) -> str:
        url = httpx.URL(value) if value.startswith(("https://", "http://")) else None
        if url is None or not url.host:
            raise ValueError("must be the absolute http(s) redirect URI the code was issued for")
        return value


def basic_auth(client_id: str, client_secret: str) -> str:
    """Fortnox's token endpoint credentials: `Basic base64(client_id:client_secret)`."""
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


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

    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, FortnoxFields)
        started = self.clock()
        response = await self._token(
            {
                "grant_type": "authorization_code",
                "code": fields.code.get_secret_value(),
                "redirect_uri": fields.redirect_uri,
            },
            _classify_exchange,
        )
        credentials, expires_at = _tokens(response, started)
        # The company names the connection and keys the per-tenant rate limit.
        company = await self._company(credentials["access_token"], _token_key(credentials))
        connection = {
            "company_name": company.get("CompanyName"),
            "organization_number": company.get("OrganizationNumber"),
            "scope": json_object(response).get("scope"),
        }
        return Authorized(credentials, connection, expires_at)

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        expires_at = stored_time(credentials.get("expires_at"))
        if expires_at is None:
            return bool(credentials.get("refresh_token"))  # expiry unknown: assume it is gone
        return expires_at - now <= timedelta(seconds=self.settings.refresh_margin_seconds)

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        """One use of the refresh token: Fortnox invalidates it at once, so the caller must store
        the new pair before anyone else refreshes (it holds the account's lock)."""
        refresh_token = credentials.get("refresh_token")
        if not refresh_token:
            raise PermanentFailure(
                ErrorCode.REFRESH_FAILED, "no Fortnox refresh token is stored; connect again"
            )
        started = self.clock()
        response = await self._token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, _classify_refresh
        )
        new, expires_at = _tokens(response, started)
        return Authorized(new, connection, expires_at)

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

    async def _token(
        self, form: dict[str, str], classify: Callable[[httpx.Response], ProviderError | None]
    ) -> httpx.Response:
        if not self.settings.client_id or self.settings.client_secret is None:
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID,
                "the Fortnox integration is not configured: set CONNECTIONS_FORTNOX_CLIENT_ID "
                "and CONNECTIONS_FORTNOX_CLIENT_SECRET",
            )
        secret = self.settings.client_secret.get_secret_value()
        return await self.http.request(
            "POST",
            f"{self.settings.auth_base_url.rstrip('/')}/oauth-v1/token",
            data=form,
            headers={
                "Authorization": basic_auth(self.settings.client_id, secret),
                "Accept": "application/json",
            },
            classify=classify,
        )

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


def _classify_exchange(response: httpx.Response) -> ProviderError | None:
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


def _classify_refresh(response: httpx.Response) -> ProviderError | None:
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


def _tokens(response: httpx.Response, started: datetime) -> tuple[dict[str, Any], datetime | None]:
    """Credentials from a token answer; expiry counted from when we asked, to err early."""
    body = json_object(response)
    access, refresh = body.get("access_token"), body.get("refresh_token")
    if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
        raise PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Fortnox's token answer lacked the tokens"
        )
    lifetime = body.get("expires_in")
    expires_at = started + timedelta(
        seconds=lifetime if isinstance(lifetime, int | float) else 3600
    )
    credentials = {
        "access_token": access,
        "refresh_token": refresh,
        "expires_at": expires_at.isoformat(),
    }
    return credentials, expires_at


def _token_key(credentials: dict[str, Any]) -> str:
    """A limiter key before the company is known: a digest, so no token sits in memory twice."""
    return hashlib.sha256(str(credentials.get("access_token")).encode()).hexdigest()[:16]
