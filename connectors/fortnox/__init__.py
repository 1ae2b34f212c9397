"""Fortnox: OAuth-connected companies, checked against the REST API; no webhooks, its events
come through the topics WebSocket (`stream`), routed by the tenant id kept in metadata."""

from connectors.fortnox.connector import FortnoxConnector, error_information
from connectors.fortnox.oauth import basic_auth
from connectors.fortnox.settings import FortnoxFields, FortnoxSettings
from connectors.fortnox.stream import fortnox_offset, parse_fortnox
from connectors.provider import Provider

# The metadata key that holds an account's Fortnox tenant id, which its events are routed by.
TENANT_KEY = "fortnox_tenant_id"

PROVIDER = Provider(
    type="fortnox",
    title="Fortnox",
    settings=FortnoxSettings,
    connector=lambda s, http, clock: FortnoxConnector(s, http, clock),
    webhooks=None,
    routes=(("metadata", TENANT_KEY),),
    topics={},
    stream_key=TENANT_KEY,
)

__all__ = [
    "PROVIDER",
    "FortnoxConnector",
    "FortnoxFields",
    "FortnoxSettings",
    "basic_auth",
    "error_information",
    "fortnox_offset",
    "parse_fortnox",
]
