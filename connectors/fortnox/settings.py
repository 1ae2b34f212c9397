"""Fortnox's settings (`CONNECTIONS_FORTNOX_*`) and the credential fields an account is added
with: an OAuth code and the redirect URI it was issued for."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from connectors.oauth import CodeFields
from connectors.provider import ProviderSettings

DEFAULT_TOPICS = "invoices,customers,orders,offers,articles,suppliers,supplier-invoices,vouchers"


class FortnoxSettings(ProviderSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTIONS_FORTNOX_", extra="ignore")

    api_base_url: str = "https://api.fortnox.se"
    auth_base_url: str = "https://apps.fortnox.se"
    ws_url: str = "wss://ws.fortnox.se/topics-v1"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # Space-separated scopes asked for when connecting: the health check reads the company.
    scopes: str = "companyinformation"
    # The topics the listener subscribes to, comma-separated.
    topics: str = DEFAULT_TOPICS
    # 25 requests per 5 s sliding window, per client and tenant.
    requests_per_window: int = 25
    window_seconds: float = 5.0
    # Fortnox's 429 names no wait; a full window has certainly passed after this long.
    rate_limited_wait: float = 5.0
    refresh_margin_seconds: float = 300.0
    # The listener re-reads every account's tokens this often even when told of no change;
    # on SQLite, which cannot tell it of changes, `tenants_poll_seconds` instead.
    tenants_every_seconds: float = 60.0
    tenants_poll_seconds: float = 5.0

    def topic_list(self) -> list[str]:
        return [t.strip() for t in self.topics.split(",") if t.strip()]


class FortnoxFields(CodeFields):
    """`code` and the `redirect_uri` it was issued for (Fortnox checks that they match)."""
