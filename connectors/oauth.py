"""What the OAuth providers share: the credential fields of a code exchange, and when an expiring
access token is renewed ahead of use."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from connectors.base import stored_time


class CodeFields(BaseModel):
    """`code` and the `redirect_uri` it was issued for (the provider checks that they match)."""

    model_config = ConfigDict(extra="forbid")

    code: SecretStr
    redirect_uri: str

    @field_validator("code")
    @classmethod
    def _code_given(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must be the authorization code from the provider's redirect")
        return value

    @field_validator("redirect_uri")
    @classmethod
    def _redirect_shape(cls, value: str) -> str:
        url = httpx.URL(value) if value.startswith(("https://", "http://")) else None
        if url is None or not url.host:
            raise ValueError("must be the absolute http(s) redirect URI the code was issued for")
        return value


def can_refresh(credentials: dict[str, Any]) -> bool:
    """A refresh token is stored."""
    return bool(credentials.get("refresh_token"))


def expires_soon(credentials: dict[str, Any], now: datetime, margin_seconds: float) -> bool:
    """The access token expires within the margin; an unknown expiry of a refreshable token
    counts as expired, so it is renewed rather than trusted."""
    expires_at = stored_time(credentials.get("expires_at"))
    if expires_at is None:
        return can_refresh(credentials)
    return expires_at - now <= timedelta(seconds=margin_seconds)
