"""HubSpot as one provider: settings, credential fields, OAuth (with the uninstall seen through a
refused refresh), the health check on account details, and webhooks in batches.

No topic changes an account's state: HubSpot's webhooks have no uninstall event, so every event
is recorded (and published) as it came."""

from connectors.hubspot.check import account_metadata, classify_api, missing_scopes, throttle
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.oauth import authorize_link, classify_refresh
from connectors.hubspot.settings import HubSpotFields, HubSpotSettings
from connectors.hubspot.signature import signed_uri, v1_signature, v3_signature
from connectors.hubspot.webhooks import HubSpotWebhooks, event_identity, parse_event
from connectors.provider import Provider

PROVIDER = Provider(
    type="hubspot",
    title="HubSpot",
    settings=HubSpotSettings,
    connector=HubSpotConnector,
    webhooks=HubSpotWebhooks,
    routes=(("connection", "portal_id"),),
    topics={},
    batches=True,
)

__all__ = [
    "PROVIDER",
    "HubSpotConnector",
    "HubSpotFields",
    "HubSpotSettings",
    "HubSpotWebhooks",
    "account_metadata",
    "authorize_link",
    "classify_api",
    "classify_refresh",
    "event_identity",
    "missing_scopes",
    "parse_event",
    "signed_uri",
    "throttle",
    "v1_signature",
    "v3_signature",
]
