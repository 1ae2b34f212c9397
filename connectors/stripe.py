"""Stripe: accounts reached with their own API key, or through Connect with the platform key."""

from __future__ import annotations

import builtins
import hashlib
import re
from datetime import datetime
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from connectors.base import (
    Authorized,
    CheckResult,
    ErrorCode,
    PermanentFailure,
    ProviderError,
    TemporaryFailure,
)
from connectors.http import HttpLayer, common_failure

API_KEY = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{8,}$")
WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{8,}$")
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{6,}$")
REVOKED = re.compile(r"does not have access to account|access may have been revoked", re.I)
SECRET = re.compile(r"\b(sk_live|sk_test|rk_live|rk_test|whsec)_[A-Za-z0-9*]{8,}")


class StripeSettings(BaseModel):
    api_base_url: str = "https://api.stripe.com"
    connect_base_url: str = "https://connect.stripe.com"
    platform_key: SecretStr | None = None
    connect_client_id: str | None = None
    api_version: str | None = None
    requests_per_second: int = 25  # the sandbox limit; live allows 100


class StripeFields(BaseModel):
    """Exactly one form: `api_key` (+ optional `webhook_secret`), `code`, or `stripe_account_id`."""

    model_config = ConfigDict(extra="forbid")

    api_key: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    code: SecretStr | None = None
    stripe_account_id: str | None = None

    @field_validator("api_key")
    @classmethod
    def _key_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not API_KEY.match(value.get_secret_value()):
            raise ValueError("must be a Stripe secret or restricted key (sk_... or rk_...)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET.match(value.get_secret_value()):
            raise ValueError("must be a Stripe webhook signing secret (whsec_...)")
        return value

    @field_validator("stripe_account_id")
    @classmethod
    def _account_shape(cls, value: str | None) -> str | None:
        if value is not None and not ACCOUNT_ID.match(value):
            raise ValueError("must be a Stripe account id (acct_...)")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> StripeFields:
        forms = [
            f for f in ("api_key", "code", "stripe_account_id") if getattr(self, f) is not None
        ]
        if len(forms) != 1:
            raise ValueError("give exactly one of api_key, code or stripe_account_id")
        if self.webhook_secret is not None and self.api_key is None:
            raise ValueError("webhook_secret goes with api_key")
        return self


class StripeConnector:
    type: ClassVar[str] = "stripe"
    credentials_model: ClassVar[builtins.type[BaseModel]] = StripeFields

    def __init__(self, settings: StripeSettings, http: HttpLayer) -> None:
        self.settings = settings
        self.http = http
        self.limiter = http.limiter("stripe", settings.requests_per_second, 1.0)

    async def authorize(self, fields: BaseModel) -> Authorized:
        assert isinstance(fields, StripeFields)
        if fields.api_key is not None:
            creds: dict[str, Any] = {"api_key": fields.api_key.get_secret_value()}
            if fields.webhook_secret is not None:
                creds["webhook_secret"] = fields.webhook_secret.get_secret_value()
            connection = {"mode": "api_key", "key_last4": creds["api_key"][-4:]}
            # "Check a key": Stripe says whether it is live before we keep it.
            await self._get_account(creds, connection)
            return Authorized(creds, connection)
        if fields.stripe_account_id is not None:
            self._platform_key()
            return Authorized(
                {}, {"mode": "connect", "stripe_account_id": fields.stripe_account_id}
            )
        assert fields.code is not None
        return await self._exchange_code(fields.code.get_secret_value())

    async def _exchange_code(self, code: str) -> Authorized:
        response = await self.http.request(
            "POST",
            f"{self.settings.connect_base_url}/oauth/token",
            data={"grant_type": "authorization_code", "code": code},
            headers={"Authorization": f"Bearer {self._platform_key()}"},
            classify=_classify_oauth,
            limiter=self.limiter,
            limit_key="platform",
        )
        body = response.json()
        account_id = body.get("stripe_user_id")
        if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID, "Stripe's token answer named no connected account"
            )
        return Authorized(
            {"refresh_token": body["refresh_token"]} if body.get("refresh_token") else {},
            {"mode": "connect", "stripe_account_id": account_id, "scope": body.get("scope")},
        )

    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        account = await self._get_account(credentials, connection)
        # The same verdict as an `account.updated` event, so a check never undoes it.
        message = disabled_message(account)
        if message is not None:
            raise PermanentFailure(ErrorCode.ACCOUNT_LOCKED, message)
        return CheckResult(_metadata(account))

    async def _get_account(
        self, credentials: dict[str, Any], connection: dict[str, Any]
    ) -> dict[str, Any]:
        response = await self.http.request(
            "GET",
            f"{self.settings.api_base_url}/v1/account",
            headers=self._headers(credentials, connection),
            classify=_classify_api,
            limiter=self.limiter,
            limit_key=connection.get("stripe_account_id") or _key_digest(credentials),
        )
        body = response.json()
        return body if isinstance(body, dict) else {}

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        return False  # Stripe keys and Connect grants do not expire

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        raise PermanentFailure(ErrorCode.REFRESH_FAILED, "Stripe credentials cannot be refreshed")

    def _headers(self, credentials: dict[str, Any], connection: dict[str, Any]) -> dict[str, str]:
        headers = {}
        if self.settings.api_version:
            headers["Stripe-Version"] = self.settings.api_version
        if credentials.get("api_key"):
            headers["Authorization"] = f"Bearer {credentials['api_key']}"
        else:
            headers["Authorization"] = f"Bearer {self._platform_key()}"
            headers["Stripe-Account"] = connection["stripe_account_id"]
        return headers

    def _platform_key(self) -> str:
        if self.settings.platform_key is None:
            raise PermanentFailure(
                ErrorCode.CREDENTIALS_INVALID,
                "Stripe Connect is not configured: set CONNECTIONS_STRIPE_PLATFORM_KEY",
            )
        return self.settings.platform_key.get_secret_value()


def _key_digest(credentials: dict[str, Any]) -> str:
    """A limiter key for an API-key account that is not the key itself."""
    return hashlib.sha256(str(credentials.get("api_key")).encode()).hexdigest()[:16]


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or "")
    if isinstance(error, str):
        return str(body.get("error_description") or error)
    return ""


def _classify_api(response: httpx.Response) -> ProviderError | None:
    if response.is_success:
        return None
    message = _error_message(response)
    # A Connect account that deauthorized the platform answers 403 (older API versions 401)
    # with this wording; it is the connection that is gone, not the key.
    if response.status_code in (401, 403) and REVOKED.search(message):
        return PermanentFailure(
            ErrorCode.CONNECTION_REVOKED,
            "the platform has no access to this Stripe account: its owner revoked the "
            "application, or it was never connected; connect it again",
        )
    if response.status_code == 401:
        return PermanentFailure(
            ErrorCode.CREDENTIALS_INVALID, "Stripe rejected the API key; it may have been rolled"
        )
    if response.status_code == 403:
        return PermanentFailure(
            ErrorCode.PERMISSION_MISSING,
            "the Stripe key lacks a permission this check needs; use a key with read access",
        )
    should_retry = response.headers.get("Stripe-Should-Retry")
    if should_retry == "true" or response.status_code == 409:
        # Stripe says a retry may succeed (a lock timeout, an idempotency conflict).
        return TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"Stripe answered {response.status_code} and asked for a retry",
        )
    common = common_failure(response, "Stripe")
    if common is not None and should_retry == "false" and not common.retry_after:
        # Still a provider problem (degraded), but Stripe says retrying now will not help.
        return PermanentFailure(common.code, common.message)
    if common is not None:
        return common
    return PermanentFailure(
        ErrorCode.CREDENTIALS_INVALID,
        scrub_keys(f"Stripe answered {response.status_code}: {message}")[:300],
    )


def scrub_keys(text: str) -> str:
    """Stripe's messages may quote a key; keep at most its last four characters."""
    return SECRET.sub(lambda m: f"{m.group(1)}_****{m.group(0)[-4:]}", text)


def _classify_oauth(response: httpx.Response) -> ProviderError | None:
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


def _metadata(account: dict[str, Any]) -> dict[str, Any]:
    profile = account.get("business_profile") or {}
    settings = (account.get("settings") or {}).get("dashboard") or {}
    requirements = account.get("requirements") or {}
    return {
        "stripe_account_id": account.get("id"),
        "business_name": profile.get("name") or settings.get("display_name"),
        "country": account.get("country"),
        "default_currency": account.get("default_currency"),
        "charges_enabled": account.get("charges_enabled"),
        "payouts_enabled": account.get("payouts_enabled"),
        "disabled_reason": requirements.get("disabled_reason"),
        "currently_due": requirements.get("currently_due") or [],
    }


def disabled_message(account: dict[str, Any]) -> str | None:
    """Words for a person when Stripe's requirements have disabled charges or payouts on
    `account` (a Stripe account object); None otherwise. Payouts that are merely not enabled yet
    (no bank account while onboarding: no `disabled_reason`) are not a disablement."""
    requirements = account.get("requirements")
    requirements = requirements if isinstance(requirements, dict) else {}
    reason = requirements.get("disabled_reason")
    disabled = [k for k in ("charges", "payouts") if account.get(f"{k}_enabled") is False]
    if not disabled or not reason:
        return None
    text = f"Stripe has disabled {' and '.join(disabled)} on this account ({reason})"
    text += "; complete the account's requirements in the Stripe dashboard"
    due = requirements.get("past_due") or requirements.get("currently_due") or []
    if isinstance(due, list) and due:
        text += ": " + ", ".join(str(d) for d in due[:10])
    return text
