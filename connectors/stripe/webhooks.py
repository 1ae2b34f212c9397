"""Stripe's webhooks: the `Stripe-Signature` check on the raw body, and the event parsed into the
common inbound event. Pure functions; the ingest calls them before anything is stored."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from connectors.events import (
    MAX_ID_LENGTH,
    MAX_TOPIC_LENGTH,
    MalformedEvent,
    NoSecretConfigured,
    ParsedEvent,
    SignatureError,
    bounded,
    header_getter,
    json_object,
    split_secrets,
    usable_secrets,
)
from connectors.provider import WebhookRequest
from connectors.stripe.settings import StripeSettings

STRIPE_TOLERANCE_SECONDS = 300


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
    keys = usable_secrets(secrets)
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
    payload = json_object(body)
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
        event_id=bounded(event_id, MAX_ID_LENGTH, "event id"),
        topic=bounded(topic, MAX_TOPIC_LENGTH, "type"),
        route_key=path_account or account,
        occurred_at=occurred_at,
        payload=payload,
        body=body,
    )


class StripeWebhooks:
    """`POST /webhooks/stripe` (the platform's endpoint, `CONNECTIONS_STRIPE_WEBHOOK_SECRET`) and
    `POST /webhooks/stripe/{account_id}` (an account's own endpoint, its `webhook_secret`)."""

    def __init__(
        self,
        settings: StripeSettings,
        public_base_url: str = "",
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        # `public_base_url` is unused: Stripe signs the body and time only, not the URL called.
        secret = settings.webhook_secret
        self.secrets = split_secrets(secret.get_secret_value() if secret is not None else None)
        self.now = now  # tests freeze it to check the tolerance

    def verify(self, request: WebhookRequest, secrets: list[str] | None = None) -> None:
        header = header_getter(request.headers)("stripe-signature")
        given = self.secrets if secrets is None else secrets
        verify_stripe(request.body, header, given, now=self.now)

    def parse(self, request: WebhookRequest, account_ref: str | None = None) -> list[ParsedEvent]:
        # The per-account route reaches its account through the id the ingest stores with the
        # event, so the route key stays the event's own `account` (None for a direct account).
        return [parse_stripe(request.body, None)]
