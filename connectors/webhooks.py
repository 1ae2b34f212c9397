"""Provider events at the edge: signature checks on the raw body, and parsing into one shape.

Pure functions (no network, database or Celery); the ingest endpoint and the Fortnox listener
call them before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STRIPE_TOLERANCE_SECONDS = 300
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


def _usable(secrets: Iterable[str | None]) -> list[bytes]:
    return [s.encode() for s in secrets if s]


def split_secrets(value: str | None) -> list[str]:
    """A comma-separated secret setting as its list of secrets."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


# -- Shopify ----------------------------------------------------------------------------------


def shopify_signature(secret: str, body: bytes) -> str:
    """The `X-Shopify-Hmac-Sha256` header value: base64 of HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_shopify(body: bytes, header: str | None, secrets: Iterable[str | None]) -> None:
    """Accept the body when its HMAC matches any configured secret (current or previous)."""
    keys = _usable(secrets)
    if not keys:
        raise NoSecretConfigured("no Shopify app secret is configured")
    if not header:
        raise SignatureError("X-Shopify-Hmac-Sha256 is missing")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("X-Shopify-Hmac-Sha256 is not base64") from None
    matched = False
    for key in keys:
        # Every secret is tried, so the time taken does not say which one matched.
        matched |= hmac.compare_digest(hmac.new(key, body, hashlib.sha256).digest(), given)
    if not matched:
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match")


def parse_shopify(headers: Mapping[str, str], body: bytes) -> ParsedEvent:
    """The event id is `X-Shopify-Event-Id` (the same across subscriptions), else the webhook id;
    it is routed by `X-Shopify-Shop-Domain`."""
    get = _header_getter(headers)
    topic = get("x-shopify-topic")
    event_id = get("x-shopify-event-id") or get("x-shopify-webhook-id")
    shop = get("x-shopify-shop-domain")
    if not topic:
        raise MalformedEvent("X-Shopify-Topic is missing")
    if not event_id:
        raise MalformedEvent("X-Shopify-Event-Id and X-Shopify-Webhook-Id are missing")
    if not shop:
        raise MalformedEvent("X-Shopify-Shop-Domain is missing")
    return ParsedEvent(
        provider="shopify",
        event_id=_bounded(event_id, MAX_ID_LENGTH, "event id"),
        topic=_bounded(topic, MAX_TOPIC_LENGTH, "topic"),
        route_key=_bounded(shop.strip().lower(), MAX_ID_LENGTH, "shop domain"),
        occurred_at=parse_time(get("x-shopify-triggered-at")),
        payload=_json_object(body),
        body=body,
    )


# -- Stripe -----------------------------------------------------------------------------------


def stripe_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """One `v1` value: hex HMAC-SHA256 of `{t}.{body}` with the endpoint's signing secret."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def stripe_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header as Stripe sends it (for simulators and load generators)."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={stripe_signature(secret, t, body)}"


def verify_stripe(
    body: bytes,
    header: str | None,
    secrets: Iterable[str | None],
    *,
    tolerance: int = STRIPE_TOLERANCE_SECONDS,
    now: Callable[[], float] = time.time,
) -> int:
    """Accept when any `v1` matches any secret and `t` is within `tolerance` of `now()`;
    returns the signed timestamp."""
    keys = _usable(secrets)
    if not keys:
        raise NoSecretConfigured("no Stripe webhook secret is configured")
    if not header:
        raise SignatureError("Stripe-Signature is missing")
    timestamp: str | None = None
    candidates: list[bytes] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if name == "t" and timestamp is None:
            timestamp = value
        elif name == "v1":
            candidates.append(value.encode())
    if timestamp is None or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("Stripe-Signature has no usable timestamp")
    if not candidates:
        raise SignatureError("Stripe-Signature has no v1 signature")
    signed = timestamp.encode() + b"." + body
    matched = False
    for key in keys:
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("no Stripe-Signature v1 matches")
    if abs(now() - int(timestamp)) > tolerance:
        # Checked after the HMAC, so a replayed old signature and a forged one look the same
        # from outside except for this message, which names no secret.
        raise SignatureError("Stripe-Signature timestamp is outside the tolerance")
    return int(timestamp)


def parse_stripe(body: bytes, path_account: str | None = None) -> ParsedEvent:
    """A Stripe event: routed by the path's account when given, else by the event's `account`."""
    payload = _json_object(body)
    event_id = payload.get("id")
    topic = payload.get("type")
    if not isinstance(event_id, str) or not event_id:
        raise MalformedEvent("the event has no id")
    if not isinstance(topic, str) or not topic:
        raise MalformedEvent("the event has no type")
    account = payload.get("account")
    if account is not None and not isinstance(account, str):
        raise MalformedEvent("the event's account is not a string")
    created = payload.get("created")
    occurred_at = None
    if isinstance(created, int) and not isinstance(created, bool) and 0 < created < 2**33:
        occurred_at = datetime.fromtimestamp(created, UTC)
    return ParsedEvent(
        provider="stripe",
        event_id=_bounded(event_id, MAX_ID_LENGTH, "event id"),
        topic=_bounded(topic, MAX_TOPIC_LENGTH, "type"),
        route_key=path_account or account,
        occurred_at=occurred_at,
        payload=payload,
        body=body,
    )


# -- Fortnox ----------------------------------------------------------------------------------


def parse_fortnox(message: Mapping[str, Any]) -> ParsedEvent:
    """A Fortnox topics event; its id is topic and offset, which is unique per topic."""
    topic = message.get("topic")
    offset = fortnox_offset(message.get("offset"))
    tenant = message.get("tenantId")
    if not isinstance(topic, str) or not topic:
        raise MalformedEvent("the event has no topic")
    if offset is None:
        raise MalformedEvent("the event has no numeric offset")
    if tenant is None or isinstance(tenant, bool) or not isinstance(tenant, int | str):
        raise MalformedEvent("the event has no tenantId")
    return ParsedEvent(
        provider="fortnox",
        event_id=_bounded(f"{topic}:{offset}", MAX_ID_LENGTH, "event id"),
        topic=_bounded(topic, MAX_TOPIC_LENGTH, "topic"),
        route_key=str(tenant),
        occurred_at=parse_time(message.get("timestamp")),
        payload=dict(message),
    )


def fortnox_offset(value: Any) -> int | None:
    """Fortnox sends offsets as decimal strings; numbers are taken too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


# -- shared -----------------------------------------------------------------------------------

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


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedEvent("the body is not a JSON object")
    if b"\\u0000" in body and _has_nul(payload):
        raise MalformedEvent("the body holds a NUL character, which cannot be stored")
    return payload


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _bounded(value: str, limit: int, what: str) -> str:
    if len(value) > limit:
        raise MalformedEvent(f"the {what} is longer than {limit} characters")
    return value


def _header_getter(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get
