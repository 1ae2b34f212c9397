"""Provider events at the edge, in one shape whatever the provider: the common inbound event, the
refusals, and the small parsers every provider's webhook or stream code shares. Pure functions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_ID_LENGTH = 255
MAX_TOPIC_LENGTH = 255


class SignatureError(Exception):
    """The signature is missing, malformed or wrong: the event is refused (401)."""


class NoSecretConfigured(SignatureError):
    """Nothing to verify with: every event is refused until a secret is configured."""


class MalformedEvent(Exception):
    """The signature is good but the event cannot be used (400)."""


@dataclass(frozen=True)
class ParsedEvent:
    """What the inbox stores: the provider's id makes redelivery of the same event free."""

    provider: str
    event_id: str
    topic: str
    route_key: str | None
    occurred_at: datetime | None
    payload: dict[str, Any]
    # The provider's JSON text of `payload`, stored as it came instead of serialized again.
    body: bytes | None = field(default=None, repr=False, compare=False)

    def payload_text(self) -> str:
        if self.body is not None:
            try:
                return self.body.decode()
            except UnicodeDecodeError:
                pass  # JSON in another encoding: store it as UTF-8
        return json.dumps(self.payload)


def usable_secrets(secrets: Iterable[str | None]) -> list[bytes]:
    return [s.encode() for s in secrets if s]


def split_secrets(value: str | None) -> list[str]:
    """A comma-separated secret setting as its list of secrets."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as UTC; Shopify's nanoseconds are cut to microseconds. None if unusable."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def json_body(body: bytes) -> Any:
    """The body's JSON value; MalformedEvent when it is not JSON or holds a NUL character."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent("the body is not JSON") from None
    if b"\\u0000" in body and has_nul(value):
        raise MalformedEvent("the body holds a NUL character, which cannot be stored")
    return value


def json_object(body: bytes) -> dict[str, Any]:
    payload = json_body(body)
    if not isinstance(payload, dict):
        raise MalformedEvent("the body is not a JSON object")
    return payload


def has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


def bounded(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise MalformedEvent(f"the {what} is longer than {limit} characters")
    return value


def header_getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get
