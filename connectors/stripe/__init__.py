"""Stripe: accounts reached with their own API key, or through Connect with the platform key.
Everything the rest of the system knows of Stripe is `PROVIDER`."""

from __future__ import annotations

from typing import Any

from connectors.base import Clock, Connector
from connectors.http import HttpLayer
from connectors.provider import Provider
from connectors.stripe.check import disabled_message, scrub_keys
from connectors.stripe.connector import StripeConnector
from connectors.stripe.settings import StripeFields, StripeSettings
from connectors.stripe.topics import TOPICS
from connectors.stripe.webhooks import (
    STRIPE_TOLERANCE_SECONDS,
    StripeWebhooks,
    parse_stripe,
    stripe_header,
    stripe_signature,
    verify_stripe,
)


def _connector(settings: Any, http: HttpLayer, _clock: Clock) -> Connector:
    return StripeConnector(settings, http)  # nothing of Stripe's expires: no clock


PROVIDER = Provider(
    type="stripe",
    title="Stripe",
    settings=StripeSettings,
    connector=_connector,
    webhooks=StripeWebhooks,
    account_secret_field="webhook_secret",
    routes=(("connection", "stripe_account_id"), ("metadata", "stripe_account_id")),
    topics=TOPICS,
)

__all__ = [
    "PROVIDER",
    "STRIPE_TOLERANCE_SECONDS",
    "TOPICS",
    "StripeConnector",
    "StripeFields",
    "StripeSettings",
    "StripeWebhooks",
    "disabled_message",
    "parse_stripe",
    "scrub_keys",
    "stripe_header",
    "stripe_signature",
    "verify_stripe",
]
