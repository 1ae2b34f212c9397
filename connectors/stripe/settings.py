"""Stripe's settings (`CONNECTIONS_STRIPE_*`) and the credential fields an account is added with."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from connectors.provider import ProviderSettings

API_KEY = re.compile(r"^(sk|rk)_(live|test)_[A-Za-z0-9]{8,}$")
WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{8,}$")
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]{6,}$")


class StripeSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTIONS_STRIPE_", extra="ignore")

    api_base_url: str = "https://api.stripe.com"
    connect_base_url: str = "https://connect.stripe.com"
    platform_key: SecretStr | None = None
    connect_client_id: str | None = None
    api_version: str | None = None
    requests_per_second: int = 25  # the sandbox limit; live allows 100
    # The platform endpoint's signing secrets, comma-separated: while one is rolled, both verify.
    webhook_secret: SecretStr | None = None


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
