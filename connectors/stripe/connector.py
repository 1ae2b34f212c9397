"""The Stripe connector: accounts reached with their own API key, or through Connect with the
platform key and the `Stripe-Account` header."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from connectors.base import Authorized, CheckResult, ErrorCode, PermanentFailure
from connectors.http import HttpLayer
from connectors.stripe import oauth
from connectors.stripe.check import account_metadata, classify_api, disabled_message, key_digest
from connectors.stripe.settings import StripeFields, StripeSettings


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
            oauth.platform_key(self.settings)
            return Authorized(
                {}, {"mode": "connect", "stripe_account_id": fields.stripe_account_id}
            )
        assert fields.code is not None
        return await oauth.exchange_code(
            self.http, self.settings, self.limiter, fields.code.get_secret_value()
        )

    async def check(self, credentials: dict[str, Any], connection: dict[str, Any]) -> CheckResult:
        account = await self._get_account(credentials, connection)
        # The same verdict as an `account.updated` event, so a check never undoes it.
        message = disabled_message(account)
        if message is not None:
            raise PermanentFailure(ErrorCode.ACCOUNT_LOCKED, message)
        return CheckResult(account_metadata(account))

    async def _get_account(
        self, credentials: dict[str, Any], connection: dict[str, Any]
    ) -> dict[str, Any]:
        response = await self.http.request(
            "GET",
            f"{self.settings.api_base_url}/v1/account",
            headers=self._headers(credentials, connection),
            classify=classify_api,
            limiter=self.limiter,
            limit_key=connection.get("stripe_account_id") or key_digest(credentials),
        )
        body = response.json()
        return body if isinstance(body, dict) else {}

    def needs_refresh(self, credentials: dict[str, Any], now: datetime) -> bool:
        return False  # Stripe keys and Connect grants do not expire

    def can_refresh(self, credentials: dict[str, Any]) -> bool:
        return False  # nothing to refresh: a rejected key or grant is the answer itself

    async def refresh(self, credentials: dict[str, Any], connection: dict[str, Any]) -> Authorized:
        raise PermanentFailure(ErrorCode.REFRESH_FAILED, "Stripe credentials cannot be refreshed")

    def identity(self, connection: dict[str, Any], metadata: dict[str, Any]) -> str | None:
        """The Stripe account: Connect names it at once, an API key's check reads it."""
        for source in (connection, metadata):
            value = source.get("stripe_account_id")
            if isinstance(value, str) and value:
                return value
        return None

    def authorize_url(
        self, *, state: str, redirect_uri: str, shop_domain: str | None = None
    ) -> str:
        return oauth.authorize_url(self.settings, state=state, redirect_uri=redirect_uri)

    async def revoke(self, credentials: dict[str, Any], connection: dict[str, Any]) -> bool:
        if credentials.get("api_key") or connection.get("mode") == "api_key":
            # A key the customer made in their own dashboard is theirs to roll; we only forget it.
            return False
        account_id = connection.get("stripe_account_id")
        if not isinstance(account_id, str) or not account_id:
            return False
        return await oauth.deauthorize(self.http, self.settings, self.limiter, account_id)

    def _headers(self, credentials: dict[str, Any], connection: dict[str, Any]) -> dict[str, str]:
        headers = {}
        if self.settings.api_version:
            headers["Stripe-Version"] = self.settings.api_version
        if credentials.get("api_key"):
            headers["Authorization"] = f"Bearer {credentials['api_key']}"
        else:
            headers["Authorization"] = f"Bearer {oauth.platform_key(self.settings)}"
            headers["Stripe-Account"] = connection["stripe_account_id"]
        return headers
