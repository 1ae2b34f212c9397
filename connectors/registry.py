"""The connectors by account type, built from one settings object and one HTTP layer, with a
private event loop so synchronous job code can call the async connectors."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from connectors.base import Clock, Connector, utc_now
from connectors.fortnox import FortnoxConnector, FortnoxSettings
from connectors.http import HttpLayer
from connectors.shopify import ShopifyConnector, ShopifySettings
from connectors.stripe import StripeConnector, StripeSettings

T = TypeVar("T")


@dataclass
class ConnectorSettings:
    stripe: StripeSettings = field(default_factory=StripeSettings)
    shopify: ShopifySettings = field(default_factory=ShopifySettings)
    fortnox: FortnoxSettings = field(default_factory=FortnoxSettings)


def connector_settings(settings: Any) -> ConnectorSettings:
    """Each provider's settings from the worker's `CONNECTIONS_*` settings object."""
    return ConnectorSettings(
        stripe=StripeSettings(
            api_base_url=settings.stripe_api_base_url,
            connect_base_url=settings.stripe_connect_base_url,
            platform_key=settings.stripe_platform_key,
            connect_client_id=settings.stripe_connect_client_id,
        ),
        shopify=ShopifySettings(
            base_url=settings.shopify_base_url,
            client_id=settings.shopify_client_id,
            client_secret=settings.shopify_client_secret,
            previous_client_secret=settings.shopify_previous_client_secret,
        ),
        fortnox=FortnoxSettings(
            api_base_url=settings.fortnox_api_base_url,
            auth_base_url=settings.fortnox_auth_base_url,
            client_id=settings.fortnox_client_id,
            client_secret=settings.fortnox_client_secret,
        ),
    )


class Connectors:
    """Every connector of the process, keyed by account type."""

    def __init__(
        self,
        settings: ConnectorSettings,
        http: HttpLayer | None = None,
        *,
        clock: Clock = utc_now,
    ) -> None:
        """`clock` dates token expiries; give it the service's clock where tests freeze time."""
        self.http = http or HttpLayer()
        self.by_type: dict[str, Connector] = {
            "stripe": StripeConnector(settings.stripe, self.http),
            "shopify": ShopifyConnector(settings.shopify, self.http, clock),
            "fortnox": FortnoxConnector(settings.fortnox, self.http, clock),
        }
        self._runner: asyncio.Runner | None = None

    def get(self, account_type: str) -> Connector:
        return self.by_type[account_type]

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one connector coroutine to completion from synchronous code (a Celery job)."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(coro)

    def close(self) -> None:
        if self._runner is not None:
            self._runner.run(self.http.aclose())
            self._runner.close()
            self._runner = None
