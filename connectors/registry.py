"""The providers, as one plain dict, and the connectors of a process built from it, with a private
event loop so synchronous job code can call the async connectors.

Adding a provider: its package under `connectors/`, one line in `PROVIDERS` (docs/providers.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from connectors import fortnox, hubspot, shopify, stripe
from connectors.base import Clock, Connector, utc_now
from connectors.http import HttpLayer
from connectors.provider import Provider, ProviderSettings

T = TypeVar("T")

PROVIDERS: dict[str, Provider] = {
    p.type: p for p in (shopify.PROVIDER, stripe.PROVIDER, fortnox.PROVIDER, hubspot.PROVIDER)
}


class ConnectorSettings(dict[str, ProviderSettings]):
    """Each provider's settings by type: the ones given, the rest read from the environment."""

    def __init__(self, given: dict[str, ProviderSettings] | None = None, **by_type: Any) -> None:
        chosen = {**(given or {}), **by_type}
        unknown = set(chosen) - set(PROVIDERS)
        if unknown:
            raise ValueError(f"no such provider: {', '.join(sorted(unknown))}")
        super().__init__(
            {t: chosen[t] if t in chosen else spec.settings() for t, spec in PROVIDERS.items()}
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
        self.settings = settings
        self.by_type: dict[str, Connector] = {
            t: spec.connector(settings[t], self.http, clock) for t, spec in PROVIDERS.items()
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
