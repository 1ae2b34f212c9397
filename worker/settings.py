"""Every setting of the contract, read once from `CONNECTIONS_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TOPICS = "invoices,customers,orders,offers,articles,suppliers,supplier-invoices,vouchers"


class Settings(BaseSettings):
    """The worker's configuration; the names are fixed by the contract."""

    model_config = SettingsConfigDict(env_prefix="CONNECTIONS_", extra="ignore")

    database_url: str = "sqlite:///var/connections.db"
    broker_url: str = "sqla+sqlite:///var/broker.db"
    result_backend: str = "db+sqlite:///var/results.db"
    events_redis_url: str | None = None
    encryption_keys: SecretStr | None = None
    service_token: SecretStr | None = None
    check_interval_seconds: int = Field(default=900, ge=10)

    shopify_client_id: str | None = None
    shopify_client_secret: SecretStr | None = None
    shopify_previous_client_secret: SecretStr | None = None
    stripe_platform_key: SecretStr | None = None
    stripe_connect_client_id: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    fortnox_client_id: str | None = None
    fortnox_client_secret: SecretStr | None = None
    fortnox_topics: str = DEFAULT_TOPICS

    shopify_base_url: str = "https://{shop}"
    stripe_api_base_url: str = "https://api.stripe.com"
    stripe_connect_base_url: str = "https://connect.stripe.com"
    fortnox_api_base_url: str = "https://api.fortnox.se"
    fortnox_auth_base_url: str = "https://apps.fortnox.se"
    fortnox_ws_url: str = "wss://ws.fortnox.se/topics-v1"

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
    var_dir: Path = Path("var")

    @field_validator("events_redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def is_embedded(self) -> bool:
        """True on the embedded SQLite defaults that `connections dev` uses."""
        return self.database_url.startswith("sqlite")

    def fortnox_topic_list(self) -> list[str]:
        return [t.strip() for t in self.fortnox_topics.split(",") if t.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
