"""The one HTTP layer under every connector: a shared transport, retries for temporary failures
only, `Retry-After` honoured within a bounded wait, and a per-provider, per-account rate limiter."""

from __future__ import annotations

import asyncio
import functools
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from connectors.base import ErrorCode, ProviderError, TemporaryFailure
from connectors.limiter import Sleep, SlidingWindowLimiter

Classifier = Callable[[httpx.Response], ProviderError | None]
# Sees every response before it is classified, e.g. to read a provider's throttling headers.
Observer = Callable[[httpx.Response], None]


@dataclass(frozen=True)
class RetryPolicy:
    """Temporary failures are tried `attempts` times in all, waiting at most `max_total_wait`."""

    attempts: int = 4
    initial_wait: float = 0.5
    max_wait: float = 8.0
    max_total_wait: float = 20.0


def default_transport() -> httpx.AsyncBaseTransport:
    """httpx over aiohttp: by measurement several times faster than httpx's own pool under
    concurrency (see bench/README.md), with the same httpx API above it."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport

    def session() -> aiohttp.ClientSession:
        # Made on first use, inside the event loop. No cookie jar: one session serves every
        # account, and a cookie one provider account set must never reach another's call.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=200, keepalive_timeout=5.0, ssl=httpx.create_ssl_context()
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    return AiohttpTransport(client=session)


# What httpx's client would add to every request; the connectors' own headers win.
BASE_HEADERS = (
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("Connection", "keep-alive"),
    ("User-Agent", "standout-connections/0.1"),
)


class HttpLayer:
    """One per process: owns the transport, the retry policy and the rate limiters.

    Requests are `httpx.Request`s sent straight to the httpx transport, and answers are
    `httpx.Response`s read in full. httpx's `AsyncClient` is left out on purpose: its cookie jar
    would carry one account's cookies into another's calls, redirects and auth are not used, and
    together they cost about a third of a request's CPU (bench/README.md).
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._given = transport
        self._transport = transport
        self._timeouts = httpx.Timeout(timeout).as_dict()
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        # Tests inject a sleep that only records; the clock must then advance with it.
        self.clock = clock
        self.limiters: dict[str, SlidingWindowLimiter] = {}

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        if self._transport is None:
            self._transport = default_transport()
        return self._transport

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
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return the response `classify` accepts, or raise its failure.
        `kwargs` are `httpx.Request`'s (`json`, `data`, `params`, `content`)."""
        request = httpx.Request(
            method,
            _parsed_url(url),
            headers=_with_base(headers),
            extensions={"timeout": self._timeouts},
            **kwargs,
        )
        started = self.clock()
        try:
            # Most calls succeed at once: the retry machinery is built only when one does not.
            return await self._once(request, classify, limiter, limit_key, observe)
        except TemporaryFailure as failure:
            return await self._retry(
                failure, started, request, classify, limiter, limit_key, observe
            )

    async def _retry(
        self,
        first: TemporaryFailure,
        started: float,
        request: httpx.Request,
        classify: Classifier,
        limiter: SlidingWindowLimiter | None,
        limit_key: str,
        observe: Observer | None,
    ) -> httpx.Response:
        """Go on after the first attempt failed with `first`, within the retry policy."""
        policy = self.retry
        clock = self.clock

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
        pending: TemporaryFailure | None = first
        async for attempt in retrying:
            with attempt:
                if pending is not None:
                    # Tenacity's first attempt is the one already made: it fails as it did, so
                    # the attempts, waits and budget count exactly as if tenacity had made it.
                    replay, pending = pending, None
                    raise replay
                return await self._once(request, classify, limiter, limit_key, observe)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _once(
        self,
        request: httpx.Request,
        classify: Classifier,
        limiter: SlidingWindowLimiter | None,
        limit_key: str,
        observe: Observer | None,
    ) -> httpx.Response:
        if limiter is not None:
            await limiter.acquire(limit_key, self.sleep)
        try:
            response = await self._send(request)
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

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """What `AsyncClient.send` does for us: send, and read the answer in full."""
        response = await self.transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = self._given


# A provider's endpoints repeat for every account: parse each URL once (httpx.URL is immutable).
_parsed_url = functools.lru_cache(maxsize=1024)(httpx.URL)


def _with_base(headers: dict[str, str] | None) -> list[tuple[str, str]]:
    if not headers:
        return list(BASE_HEADERS)
    given = {name.lower() for name in headers}
    return [h for h in BASE_HEADERS if h[0].lower() not in given] + list(headers.items())


_parsed: weakref.WeakKeyDictionary[httpx.Response, dict[str, Any]] = weakref.WeakKeyDictionary()


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object, or {} when it holds none. Parsed once per response, however
    many of a connector's steps (observe, classify, read) look at it."""
    found = _parsed.get(response)
    if found is None:
        try:
            body = response.json()
        except ValueError:
            body = None
        found = body if isinstance(body, dict) else {}
        _parsed[response] = found
    return found


def oauth_error(response: httpx.Response) -> str:
    """The OAuth `error` code of an answer (`invalid_grant`, ...), lower-cased; "" when none."""
    return str(json_object(response).get("error") or "").lower()


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
