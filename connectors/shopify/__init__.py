"""Shopify as one provider: settings, credential fields, OAuth, the health check, webhooks and
what each webhook topic means."""

from connectors.provider import Provider
from connectors.shopify.connector import ShopifyConnector
from connectors.shopify.oauth import query_hmac, verify_callback
from connectors.shopify.settings import ShopifyFields, ShopifySettings
from connectors.shopify.topics import SHOP_FIELDS, TOPICS
from connectors.shopify.webhooks import (
    ShopifyWebhooks,
    parse_shopify,
    shopify_signature,
    verify_shopify,
)

PROVIDER = Provider(
    type="shopify",
    title="Shopify",
    settings=ShopifySettings,
    connector=ShopifyConnector,
    webhooks=ShopifyWebhooks,
    routes=(("connection", "shop_domain"),),
    topics=TOPICS,
)

__all__ = [
    "PROVIDER",
    "SHOP_FIELDS",
    "TOPICS",
    "ShopifyConnector",
    "ShopifyFields",
    "ShopifySettings",
    "ShopifyWebhooks",
    "parse_shopify",
    "query_hmac",
    "shopify_signature",
    "verify_callback",
    "verify_shopify",
]
