"""The one HTTP layer under every connector: a shared client, retries for temporary failures only,
`Retry-After` honoured within a bounded wait, and a per-provider, per-account rate limiter."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from connectors.base import ErrorCode, ProviderError, TemporaryFailure

Classifier = Callable[[httpx.Response], ProviderError | None]
# Sees every response before it is classified, e.g. to read a provider's throttling headers.
Observer = Callable[[httpx.Response], None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Temporary failures are tried `attempts` times in all, waiting at most `max_total_wait`."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_total_wait: float = 20.0


class SlidingWindowLimiter:
    """At most `limit` calls per `period` seconds for each key (say, one provider account), and a
    pause per key when the provider tells us to slow down."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.period = period
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, key: str, sleep: Sleep = asyncio.sleep) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            calls = self._calls.setdefault(key, deque())
            while True:
                now = self._clock()
                # Read on every turn: a deferral may arrive while we wait.
                paused = self._paused_until.get(key, 0.0) - now
                if paused > 0:
                    await sleep(paused)
                    continue
                while calls and calls[0] <= now - self.period:
                    calls.popleft()
                if len(calls) < self.limit:
                    calls.append(now)
                    return
                await sleep(calls[0] + self.period - now)

    def defer(self, key: str, seconds: float) -> None:
        """The provider told us to slow down: nothing goes out for `seconds` (a longer pause
        already in force is kept)."""
        if seconds <= 0:
            return
        until = self._clock() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)

    def paused_for(self, key: str) -> float:
        """Seconds until calls for `key` may go out again because of a deferral."""
        return max(0.0, self._paused_until.get(key, 0.0) - self._clock())


def default_transport() -> httpx.AsyncBaseTransport:
    """httpx over aiohttp: by measurement several times faster than httpx's own pool under
    concurrency (see bench/README.md), with the same httpx API above it."""
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(limits=httpx.Limits(max_connections=200, max_keepalive_connections=100))


class HttpLayer:
    """One per process: owns the client, the retry policy and the rate limiters."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        # Tests inject a sleep that only records; the clock must then advance with it.
        self.clock = clock
        self._client: httpx.AsyncClient | None = None
        self.limiters: dict[str, SlidingWindowLimiter] = {}

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport or default_transport(),
                timeout=httpx.Timeout(self._timeout),
                headers={"User-Agent": "standout-connections/0.1"},
            )
        return self._client

    def limiter(self, provider: str, limit: int, period: float) -> SlidingWindowLimiter:
        if provider not in self.limiters:
            self.limiters[provider] = SlidingWindowLimiter(limit, period, self.clock)
        return self.limiters[provider]

    async def request(
        self,
        method: str,
        url: str,
        *,
        classify: Classifier,
        limiter: SlidingWindowLimiter | None = None,
        limit_key: str = "",
        observe: Observer | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return the response `classify` accepts, or raise its failure."""
        policy = self.retry
        clock = self.clock
        started = clock()

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            backoff = min(policy.max_wait, policy.initial_wait * 2 ** (state.attempt_number - 1))
            delay = random.uniform(backoff / 2, backoff)
            if isinstance(error, ProviderError) and error.retry_after is not None:
                delay = max(delay, error.retry_after)
            remaining = policy.max_total_wait - (clock() - started)
            return max(0.0, min(delay, remaining))

        def give_up(state: RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome else None
            if isinstance(error, ProviderError) and error.retry_after is not None:
                # Waiting past the budget would only delay the same answer.
                if error.retry_after > policy.max_total_wait - (clock() - started):
                    return True
            return state.attempt_number >= policy.attempts

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TemporaryFailure),
            wait=wait,
            stop=give_up,
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._once(method, url, classify, limiter, limit_key, observe, kwargs)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _once(
        self,
        method: str,
        url: str,
        classify: Classifier,
        limiter: SlidingWindowLimiter | None,
        limit_key: str,
        observe: Observer | None,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        if limiter is not None:
            await limiter.acquire(limit_key, self.sleep)
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryFailure(
                ErrorCode.TIMEOUT, "the provider did not answer in time"
            ) from exc
        except httpx.TransportError as exc:
            raise TemporaryFailure(
                ErrorCode.PROVIDER_UNAVAILABLE,
                f"could not reach the provider ({type(exc).__name__})",
            ) from exc
        if observe is not None:
            observe(response)
        failure = classify(response)
        if failure is not None:
            if limiter is not None and failure.retry_after:
                limiter.defer(limit_key, failure.retry_after)
            raise failure
        return response

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def retry_after_seconds(response: httpx.Response, default: float = 1.0) -> float:
    """`Retry-After` in seconds (Shopify sends seconds, possibly fractional)."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def common_failure(response: httpx.Response, provider: str) -> ProviderError | None:
    """The failures every provider shares: 429 and 5xx are temporary."""
    if response.status_code == 429:
        return TemporaryFailure(
            ErrorCode.RATE_LIMITED,
            f"{provider} is rate limiting our calls",
            retry_after=retry_after_seconds(response),
        )
    if response.status_code >= 500:
        return TemporaryFailure(
            ErrorCode.PROVIDER_UNAVAILABLE,
            f"{provider} answered {response.status_code}; it is having trouble",
        )
    return None
