"""Every core setting of the contract, read once from `CONNECTIONS_*` environment variables. Each
provider's settings (`CONNECTIONS_<PROVIDER>_*`) live in its package and are composed from the
registry (`connectors.registry.ConnectorSettings`)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
METRICS_PORTS = {"worker": 9464, "beat": 9465, "stream": 9466}


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
    # Connect sessions: the URL prefixes a session may send the browser back to (comma-separated;
    # empty: none, the callback shows a plain result page), and how long its link stays usable.
    connect_return_urls: str = ""
    connect_session_ttl_seconds: int = Field(default=600, ge=60, le=86400)

    @field_validator("connect_return_urls")
    @classmethod
    def _return_prefixes(cls, value: str) -> str:
        for prefix in (p.strip() for p in value.split(",") if p.strip()):
            scheme, _, rest = prefix.partition("://")
            if scheme not in ("https", "http") or not rest.split("/", 1)[0]:
                raise ValueError(f"each prefix must be an absolute http(s) URL; {prefix!r} is not")
        return value

    # Whether a job arriving over the broker may carry plaintext `credentials`; unset: `accept`
    # in dev (the embedded SQLite defaults), `refuse` otherwise. The HTTP job intake and connect
    # sessions seal credentials (`credentials_sealed`) whatever this says.
    job_credentials: Literal["accept", "refuse"] | None = None

    @property
    def accepts_plaintext_job_credentials(self) -> bool:
        if self.job_credentials is None:
            return self.is_embedded
        return self.job_credentials == "accept"

    # How long processed provider events, published outgoing events, finished jobs and stream
    # entries are kept: an ISO 8601 duration (`P14D`) or seconds.
    inbox_retention: timedelta = timedelta(days=14)
    outbox_retention: timedelta = timedelta(days=7)
    jobs_retention: timedelta = timedelta(days=30)
    events_stream_retention: timedelta = timedelta(days=7)
    # Where a worker, beat or the Fortnox listener serves /metrics; unset: that process's
    # default (METRICS_PORTS). The ingest serves /metrics on its own port.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = Field(default="INFO", pattern="(?i)^(debug|info|warning|error|critical)$")
    var_dir: Path = Path("var")

    @field_validator("events_redis_url", "public_base_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "inbox_retention",
        "outbox_retention",
        "jobs_retention",
        "events_stream_retention",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: object) -> object:
        """A plain number in the environment is seconds."""
        if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
            return float(value)
        return value

    @field_validator(
        "inbox_retention", "outbox_retention", "jobs_retention", "events_stream_retention"
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. P14D or 1209600")
        return value

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
