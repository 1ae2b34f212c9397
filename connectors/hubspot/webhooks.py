"""HubSpot's webhooks at the edge, `POST /webhooks/hubspot`: the v3 signature over the public URL
(v1 as a fallback), and a batch of up to 100 events parsed into one inbound event each, identified
by the composite key of ../shared/PROVIDERS-hubspot.md because HubSpot's `eventId` is not unique.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from connectors.events import (
    MAX_TOPIC_LENGTH,
    MalformedEvent,
    NoSecretConfigured,
    ParsedEvent,
    SignatureError,
    bounded,
    header_getter,
    json_body,
    usable_secrets,
)
from connectors.hubspot.check import portal_text
from connectors.hubspot.settings import HubSpotSettings
from connectors.hubspot.signature import signed_uri, v3_message
from connectors.provider import WebhookRequest

# What makes two deliveries the same event. `attemptNumber` is left out: a retry of an event
# differs from the first delivery only there.
IDENTITY_FIELDS = (
    "subscriptionId",
    "eventId",
    "objectId",
    "occurredAt",
    "propertyName",
    "propertyValue",
)


def event_identity(event: dict[str, Any], portal: str) -> str:
    """A stable digest of (portalId, subscriptionId, eventId, objectId, occurredAt, propertyName,
    propertyValue); absent fields count as null."""
    parts = [portal, *(event.get(name) for name in IDENTITY_FIELDS)]
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def occurred_time(value: Any) -> datetime | None:
    """`occurredAt` (epoch milliseconds) as UTC; None when absent or unusable."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or not 0 < value < 2**47:
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def parse_event(item: Any) -> ParsedEvent:
    if not isinstance(item, dict):
        raise MalformedEvent("an event of the batch is not a JSON object")
    portal = portal_text(item.get("portalId"))
    if portal is None:
        raise MalformedEvent("an event of the batch has no portalId")
    # Payloads carry `subscriptionType`; the docs' table calls it `eventType`.
    topic = item.get("subscriptionType") or item.get("eventType")
    if not isinstance(topic, str) or not topic:
        raise MalformedEvent("an event of the batch has no subscriptionType")
    if item.get("eventId") is None:
        raise MalformedEvent("an event of the batch has no eventId")
    return ParsedEvent(
        provider="hubspot",
        event_id=event_identity(item, portal),
        topic=bounded(topic, MAX_TOPIC_LENGTH, "subscriptionType"),
        route_key=portal,
        occurred_at=occurred_time(item.get("occurredAt")),
        payload=item,
    )


class HubSpotWebhooks:
    """`POST /webhooks/hubspot`: a batch of events for any of the app's portals, signed with the
    app's client secret."""

    def __init__(
        self,
        settings: HubSpotSettings,
        public_base_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.secrets = settings.app_secrets()
        self.public_base_url = public_base_url or ""
        self.clock = clock

    def verify(self, request: WebhookRequest, secrets: list[str] | None = None) -> None:
        keys = usable_secrets(self.secrets if secrets is None else secrets)
        if not keys:
            raise NoSecretConfigured("no HubSpot client secret is configured")
        get = header_getter(request.headers)
        v3 = get("x-hubspot-signature-v3")
        if v3:
            self._verify_v3(request, v3, get("x-hubspot-request-timestamp"), keys)
            return
        v1 = get("x-hubspot-signature")
        version = (get("x-hubspot-signature-version") or "").strip().lower()
        if v1 and version == "v1" and self.settings.accept_v1_signatures:
            # v1 has no timestamp: a captured request verifies again whenever it is replayed.
            # The inbox's identity makes a replay a duplicate while the inbox keeps the event;
            # `accept_v1_signatures` ends v1 altogether.
            _verify_v1(request.body, v1, keys)
            return
        if v1:
            raise SignatureError(f"X-HubSpot-Signature version {version or 'none'} is not accepted")
        raise SignatureError("X-HubSpot-Signature-v3 is missing")

    def _verify_v3(
        self, request: WebhookRequest, header: str, timestamp: str | None, keys: list[bytes]
    ) -> None:
        if not self.public_base_url:
            raise NoSecretConfigured(
                "CONNECTIONS_PUBLIC_BASE_URL is not configured; HubSpot's v3 signature covers "
                "the public URL it called"
            )
        if (
            not timestamp
            or not (timestamp.isascii() and timestamp.isdigit())
            or len(timestamp) > 16
        ):
            raise SignatureError("X-HubSpot-Request-Timestamp is missing or not milliseconds")
        try:
            given = base64.b64decode(header.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError("X-HubSpot-Signature-v3 is not base64") from None
        uri = signed_uri(self.public_base_url, request.path, request.query)
        message = v3_message(request.method, uri, request.body, timestamp)
        matched = False
        for key in keys:
            # Every secret is tried, so the time taken does not say which one matched.
            matched |= hmac.compare_digest(hmac.new(key, message, hashlib.sha256).digest(), given)
        if not matched:
            raise SignatureError("X-HubSpot-Signature-v3 does not match")
        age_ms = self.clock() * 1000 - int(timestamp)
        # At exactly the maximum age it is refused, as HubSpot's Python library does; ahead of
        # our clock it may be by the skew only (HubSpot's libraries accept any future time).
        if age_ms >= self.settings.signature_max_age_seconds * 1000:
            raise SignatureError("X-HubSpot-Request-Timestamp is too old")
        if -age_ms > self.settings.signature_future_skew_seconds * 1000:
            raise SignatureError("X-HubSpot-Request-Timestamp is in the future")

    def parse(self, request: WebhookRequest, account_ref: str | None = None) -> list[ParsedEvent]:
        """The batch's events, each once: an event repeated inside the batch has the same
        identity and is kept once, in the order of its first appearance."""
        batch = json_body(request.body)
        if not isinstance(batch, list):
            raise MalformedEvent("the body is not a JSON array of events")
        if not batch:
            raise MalformedEvent("the body holds no events")
        limit = self.settings.max_events_per_request
        if len(batch) > limit:
            raise MalformedEvent(
                f"the body holds {len(batch)} events; HubSpot sends at most {limit}"
            )
        events: dict[str, ParsedEvent] = {}
        for item in batch:
            event = parse_event(item)
            events.setdefault(event.event_id, event)
        return list(events.values())


def _verify_v1(body: bytes, header: str, keys: list[bytes]) -> None:
    given = header.strip().lower().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(hashlib.sha256(key + body).hexdigest().encode(), given)
    if not matched:
        raise SignatureError("X-HubSpot-Signature (v1) does not match")
