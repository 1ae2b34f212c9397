"""HubSpot's settings (`CONNECTIONS_HUBSPOT_*`) and the credential fields an account is added by.
Every URL, window and limit is a setting: several of HubSpot's numbers are UNCONFIRMED
(../shared/PROVIDERS-hubspot.md), so each must be easy to change without a release."""

from __future__ import annotations

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from connectors.oauth import CodeFields
from connectors.provider import ProviderSettings, secret_values


class HubSpotSettings(ProviderSettings):
    """The HubSpot app and how its portals are called.

    `client_secret` also keys the webhook signatures; `previous_client_secret` is still accepted
    for webhooks while a rotation is under way. `scopes` (space-separated) must list every scope
    the app requires, or HubSpot's consent page shows an error; the health call needs `oauth`.
    """

    model_config = SettingsConfigDict(env_prefix="CONNECTIONS_HUBSPOT_", extra="ignore")

    client_id: str | None = None
    client_secret: SecretStr | None = None
    previous_client_secret: SecretStr | None = None
    scopes: str = "oauth"
    optional_scopes: str = ""

    api_base_url: str = "https://api.hubapi.com"
    auth_base_url: str = "https://app.hubspot.com"
    authorize_path: str = "/oauth/authorize"
    token_path: str = "/oauth/2026-03/token"
    revoke_path: str = "/oauth/2026-03/token/revoke"
    details_path: str = "/account-info/2026-03/details"

    # Marketplace apps: 110 calls per 10 s per installing account (older pages said 100).
    requests_per_window: int = 110
    window_seconds: float = 10.0
    # The access token lives 30 minutes (`expires_in` is followed; this when it is missing).
    token_lifetime_seconds: float = 1800.0
    refresh_margin_seconds: float = 300.0
    # How long to leave a portal alone after HubSpot's answers say so.
    locked_wait_seconds: float = 2.0  # 423: the lock lasts 2 s
    secondly_wait_seconds: float = 1.0  # 429 from a per-second policy (CRM Search)
    daily_limit_wait_seconds: float = 3600.0  # 429 DAILY: no use asking again soon
    migration_wait_seconds: float = 60.0  # 477 without a Retry-After
    gateway_timeout_wait_seconds: float = 3.0  # 502/504: "pause a few seconds"
    # A pause of a portal longer than this fails its call at once instead of waiting it out.
    max_limit_wait_seconds: float = 20.0

    # Webhooks: the v3 timestamp must be younger than this, and at most the skew ahead of us.
    signature_max_age_seconds: float = 300.0
    signature_future_skew_seconds: float = 30.0
    # v1 signatures carry no timestamp, so a captured request can be replayed: allowed for the
    # CRM webhooks that still send only v1, and switched off here once they send v3.
    accept_v1_signatures: bool = True
    max_events_per_request: int = 100

    def app_secrets(self) -> list[str]:
        """The secrets that may sign HubSpot's webhooks, the current one first."""
        return secret_values(self.client_secret, self.previous_client_secret)

    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def optional_scope_list(self) -> list[str]:
        return self.optional_scopes.split()


class HubSpotFields(CodeFields):
    """`code` and the `redirect_uri` it was issued for (HubSpot checks that they match)."""
