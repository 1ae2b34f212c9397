"""Shopify's settings (`CONNECTIONS_SHOPIFY_*`) and the credential fields an account is added by."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from connectors.provider import ProviderSettings, secret_values

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")
CALLBACK_FIELDS = ("hmac", "timestamp", "state", "host")


class ShopifySettings(ProviderSettings):
    """The Shopify app and how its shops are called.

    `scopes`: the comma-separated access scopes the authorize link asks a merchant to grant;
    by default `read_products,read_orders`, what reading a shop's catalogue and sales needs (the
    health check itself needs no scope). `client_secret` also verifies Shopify's webhooks;
    `previous_client_secret` is still accepted for them while a rotation is under way.
    """

    model_config = SettingsConfigDict(env_prefix="CONNECTIONS_SHOPIFY_", extra="ignore")

    base_url: str = "https://{shop}"  # `{shop}` is the shop domain; tests point it at a simulator
    client_id: str | None = None
    client_secret: SecretStr | None = None
    previous_client_secret: SecretStr | None = None
    scopes: str = "read_products,read_orders"
    api_version: str = "2025-10"
    health_check: Literal["graphql", "rest"] = "graphql"
    refresh_margin_seconds: float = 300.0
    callback_max_age_seconds: float = 90.0
    # The REST leaky bucket: 40 calls, leaking 2 per second; we keep a few calls in reserve.
    requests_per_window: int = 40
    window_seconds: float = 20.0
    rest_leak_rate: float = 2.0
    rest_reserve_calls: int = 4
    # GraphQL cost points kept in reserve before we pause for the bucket to restore.
    graphql_reserve_points: float = 50.0

    def app_secrets(self) -> list[str]:
        """The secrets that may sign Shopify's callbacks and webhooks, the current one first."""
        return secret_values(self.client_secret, self.previous_client_secret)

    def scope_list(self) -> list[str]:
        return [s.strip() for s in self.scopes.split(",") if s.strip()]


def shop_domain(value: str) -> str:
    """The shop's `<name>.myshopify.com` domain, normalized; ValueError for anything else (it
    becomes the host of every call, so nothing else may pass)."""
    value = value.strip().lower()
    if not SHOP_DOMAIN.match(value):
        raise ValueError("must be the shop's <name>.myshopify.com domain")
    return value


class ShopifyFields(BaseModel):
    """`shop_domain` and exactly one of `access_token` or `code`. With `code`, optionally the
    OAuth callback's query parameters: as `callback`, or as `hmac`, `timestamp`, `state`, `host`."""

    model_config = ConfigDict(extra="forbid")

    shop_domain: str
    access_token: SecretStr | None = None
    code: SecretStr | None = None
    callback: dict[str, str] | None = None
    hmac: SecretStr | None = None
    timestamp: str | None = None
    state: str | None = None
    host: str | None = None

    @field_validator("shop_domain")
    @classmethod
    def _domain_shape(cls, value: str) -> str:
        return shop_domain(value)

    @model_validator(mode="after")
    def _one_form(self) -> ShopifyFields:
        if (self.access_token is None) == (self.code is None):
            raise ValueError("give exactly one of access_token or code")
        loose = [f for f in CALLBACK_FIELDS if getattr(self, f) is not None]
        if self.access_token is not None and (self.callback is not None or loose):
            raise ValueError("callback parameters go with code, not with access_token")
        if self.callback is not None and loose:
            raise ValueError("give the callback parameters either as callback or as fields")
        if loose and self.hmac is None:
            raise ValueError("callback parameters without hmac cannot be verified")
        if self.callback is not None and "hmac" not in self.callback:
            raise ValueError("callback has no hmac to verify")
        return self

    def callback_query(self) -> dict[str, str] | None:
        """The callback's query parameters as Shopify sent them, or None when none were given."""
        if self.callback is not None:
            return dict(self.callback)
        if self.hmac is None:
            return None
        assert self.code is not None
        query = {"code": self.code.get_secret_value(), "shop": self.shop_domain}
        for name in CALLBACK_FIELDS:
            value = getattr(self, name)
            if value is not None:
                query[name] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return query
