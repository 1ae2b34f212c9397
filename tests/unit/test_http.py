"""The HTTP layer without a network: retries of temporary failures only, `Retry-After` honoured
within the budget, the sliding-window limiter (its deferrals, and forgetting idle keys), the
response observer, the headers every request carries, and answers parsed once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from connectors.base import ErrorCode, PermanentFailure, ProviderError, TemporaryFailure
from connectors.http import (
    HttpLayer,
    RetryPolicy,
    common_failure,
    json_object,
    retry_after_seconds,
)
from connectors.limiter import SlidingWindowLimiter
from tests.unit.fakes import FakeTime

# Not 0: the limiter's defaults of 0.0 must not pass for "now".
START = 1000.0
POLICY = RetryPolicy(attempts=4, initial_wait=0.1, max_wait=1.0, max_total_wait=30.0)


def layer(
    handler: Callable[[httpx.Request], httpx.Response], fake: FakeTime, policy: RetryPolicy = POLICY
) -> HttpLayer:
    return HttpLayer(httpx.MockTransport(handler), retry=policy, sleep=fake.sleep, clock=fake.clock)


def classify(response: httpx.Response) -> ProviderError | None:
    if response.status_code == 401:
        return PermanentFailure(ErrorCode.CREDENTIALS_INVALID, "no")
    return common_failure(response, "Test")


def scripted(*responses: httpx.Response | Exception) -> tuple[list[int], Callable]:
    """A handler answering with `responses` in order; returns (calls, handler)."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        answer = responses[min(len(calls), len(responses)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return calls, handler


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_temporary_failures_are_retried_until_success() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(
        httpx.Response(503), httpx.Response(502), httpx.Response(200, json={"ok": True})
    )
    response = run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert response.json() == {"ok": True}
    assert len(calls) == 3
    assert len(fake.waits) == 2
    # Exponential backoff with jitter: the second wait's ceiling is twice the first's.
    assert 0.05 <= fake.waits[0] <= 0.1
    assert 0.1 <= fake.waits[1] <= 0.2


def test_temporary_failures_stop_after_the_attempts() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(httpx.Response(500))
    with pytest.raises(TemporaryFailure) as info:
        run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert info.value.code is ErrorCode.PROVIDER_UNAVAILABLE
    assert len(calls) == POLICY.attempts


def test_permanent_failures_are_not_retried() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(httpx.Response(401), httpx.Response(200))
    with pytest.raises(PermanentFailure) as info:
        run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert info.value.code is ErrorCode.CREDENTIALS_INVALID
    assert len(calls) == 1
    assert fake.waits == []


def test_retry_after_is_waited_for() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(
        httpx.Response(429, headers={"Retry-After": "2.5"}), httpx.Response(200)
    )
    run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert len(calls) == 2
    assert fake.waits == [2.5]


def test_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(TemporaryFailure) as info:
        run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert info.value.code is ErrorCode.RATE_LIMITED
    assert info.value.retry_after == 60.0
    assert len(calls) == 1
    assert fake.waits == []


def test_retry_after_defers_the_limiter_so_the_retry_waits_once() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(
        httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200)
    )
    http_ = layer(handler, fake)
    limiter = http_.limiter("test", 10, 1.0)
    run(http_.request("GET", "https://p/x", classify=classify, limiter=limiter, limit_key="a"))
    assert len(calls) == 2
    # tenacity waits the 3 s; by then the limiter's pause has passed, so no second wait.
    assert sum(fake.waits) == pytest.approx(3.0)
    assert limiter.paused_for("a") == 0.0


def test_timeouts_and_connection_errors_are_temporary() -> None:
    fake = FakeTime(START)
    calls, handler = scripted(
        httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), httpx.Response(200)
    )
    run(layer(handler, fake).request("GET", "https://p/x", classify=classify))
    assert len(calls) == 3

    calls, handler = scripted(httpx.ReadTimeout("slow"))
    with pytest.raises(TemporaryFailure) as info:
        run(layer(handler, FakeTime(START)).request("GET", "https://p/x", classify=classify))
    assert info.value.code is ErrorCode.TIMEOUT
    assert len(calls) == POLICY.attempts


def test_the_observer_sees_every_response_before_classification() -> None:
    fake = FakeTime(START)
    seen: list[int] = []
    calls, handler = scripted(httpx.Response(503), httpx.Response(200))
    run(
        layer(handler, fake).request(
            "GET", "https://p/x", classify=classify, observe=lambda r: seen.append(r.status_code)
        )
    )
    assert seen == [503, 200]


def test_retry_after_parsing() -> None:
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "2.0"})) == 2.0
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "soon"}), 7) == 7
    assert retry_after_seconds(httpx.Response(429), 3) == 3
    assert retry_after_seconds(httpx.Response(429, headers={"Retry-After": "-4"})) == 0.0


def test_limiter_allows_limit_calls_per_window_then_waits() -> None:
    fake = FakeTime(START)
    limiter = SlidingWindowLimiter(3, 5.0, fake.clock)

    async def burst() -> list[float]:
        times = []
        for _ in range(7):
            await limiter.acquire("tenant", fake.sleep)
            times.append(fake.now - 1000.0)
        return times

    times = run(burst())
    assert times == [0, 0, 0, 5, 5, 5, 10]
    # Another key has its own window.
    run(limiter.acquire("other", fake.sleep))
    assert fake.now - 1000.0 == 10


def test_limiter_defer_pauses_and_keeps_the_longer_pause() -> None:
    fake = FakeTime(START)
    limiter = SlidingWindowLimiter(100, 1.0, fake.clock)
    limiter.defer("shop", 4.0)
    limiter.defer("shop", 1.0)  # shorter: must not cut the pause short
    assert limiter.paused_for("shop") == 4.0
    run(limiter.acquire("shop", fake.sleep))
    assert fake.now - 1000.0 == pytest.approx(4.0)
    run(limiter.acquire("elsewhere", fake.sleep))
    assert fake.now - 1000.0 == pytest.approx(4.0)


def test_limiter_defer_reaches_a_caller_already_waiting() -> None:
    """A deferral that arrives while a call waits for the window is honoured by that call."""
    fake = FakeTime(START)
    limiter = SlidingWindowLimiter(1, 1.0, fake.clock)

    async def sleep_and_defer(seconds: float) -> None:
        await fake.sleep(seconds)
        if len(fake.waits) == 1:
            limiter.defer("k", 10.0)

    async def two() -> None:
        await limiter.acquire("k", sleep_and_defer)
        await limiter.acquire("k", sleep_and_defer)

    run(two())
    assert fake.waits == [1.0, 10.0]


def test_limiter_forgets_keys_idle_for_a_window_but_not_their_pauses_in_force() -> None:
    fake = FakeTime(START)
    limiter = SlidingWindowLimiter(2, 5.0, fake.clock)
    for n in range(100):
        run(limiter.acquire(f"account-{n}", fake.sleep))
    limiter.defer("paused", 60.0)
    assert len(limiter) == 101
    fake.now += 6.0  # a whole window without calls
    run(limiter.acquire("another", fake.sleep))
    assert len(limiter) == 2  # "another", and the pause still in force
    assert limiter.paused_for("paused") == pytest.approx(54.0)
    # A forgotten key starts afresh: its old calls no longer count against it.
    run(limiter.acquire("account-0", fake.sleep))
    assert fake.waits == []


def test_requests_carry_the_base_headers_the_connectors_override_and_no_cookies() -> None:
    fake = FakeTime(START)
    seen: list[httpx.Headers] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return httpx.Response(200, headers={"Set-Cookie": "session=account-a"}, json={})

    http_ = layer(handler, fake)
    run(http_.request("GET", "https://p/x", classify=classify, headers={"accept": "text/csv"}))
    run(http_.request("GET", "https://p/x", classify=classify))
    assert seen[0]["accept"] == "text/csv"
    assert seen[0]["user-agent"] == "standout-connections/0.1"
    assert seen[1]["accept"] == "*/*"
    # One layer serves every account: a cookie one answer set never reaches the next call.
    assert "cookie" not in seen[1]


def test_json_object_parses_each_answer_once() -> None:
    response = httpx.Response(200, json={"shop": {"name": "A"}})
    first = json_object(response)
    assert first == {"shop": {"name": "A"}}
    assert json_object(response) is first
    assert json_object(httpx.Response(200, content=b"[1, 2]")) == {}
    assert json_object(httpx.Response(502, content=b"<html>bad gateway")) == {}
