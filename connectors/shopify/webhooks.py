"""Shopify's webhooks at the edge: the `X-Shopify-Hmac-Sha256` check on the raw body (with the
app's current or previous secret), and the event its headers describe. Pure functions."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping

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
    parse_time,
    usable_secrets,
)
from connectors.provider import WebhookRequest
from connectors.shopify.settings import ShopifySettings


def shopify_signature(secret: str, body: bytes) -> str:
    """The `X-Shopify-Hmac-Sha256` header value: base64 of HMAC-SHA256 of the raw body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_shopify(body: bytes, header: str | None, secrets: Iterable[str | None]) -> None:
    """Accept the body when its HMAC matches any configured secret (current or previous)."""
    keys = usable_secrets(secrets)
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
    get = header_getter(headers)
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
        event_id=bounded(event_id, MAX_ID_LENGTH, "event id"),
        topic=bounded(topic, MAX_TOPIC_LENGTH, "topic"),
        route_key=bounded(shop.strip().lower(), MAX_ID_LENGTH, "shop domain"),
        occurred_at=parse_time(get("x-shopify-triggered-at")),
        payload=json_object(body),
        body=body,
    )


class ShopifyWebhooks:
    """`POST /webhooks/shopify`: one event a request, signed with the app's secret."""

    def __init__(self, settings: ShopifySettings, public_base_url: str) -> None:
        # Shopify signs the body only, so the public address plays no part.
        self.secrets = settings.app_secrets()

    def verify(self, request: WebhookRequest, secrets: list[str] | None = None) -> None:
        header = header_getter(request.headers)("x-shopify-hmac-sha256")
        verify_shopify(request.body, header, self.secrets if secrets is None else secrets)

    def parse(self, request: WebhookRequest, account_ref: str | None = None) -> list[ParsedEvent]:
        return [parse_shopify(request.headers, request.body)]
