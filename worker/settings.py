"""Every core setting of the contract, read once from `CONNECTIONS_*` environment variables. Each
provider's settings (`CONNECTIONS_<PROVIDER>_*`) live in its package and are composed from the
registry (`connectors.registry.ConnectorSettings`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PUBLIC_BASE_URL = "http://127.0.0.1:8000"


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
    # Where providers and browsers reach the ingest; in dev, DEV_PUBLIC_BASE_URL when unset.
    # Unset outside dev: nothing that needs it (HubSpot's signatures) can be verified.
    public_base_url: str | None = None

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
    var_dir: Path = Path("var")

    @field_validator("events_redis_url", "public_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("public_base_url")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL, e.g. https://hooks.example.com")
        return value.rstrip("/") if value else value

    @property
    def is_embedded(self) -> bool:
        """True on the embedded SQLite defaults that `connections dev` uses."""
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _dev_public_url(self) -> Settings:
        if self.public_base_url is None and self.is_embedded:
            self.public_base_url = DEV_PUBLIC_BASE_URL
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
