"""A per-key sliding-window rate limiter: each provider account's calls kept under its provider's
limit, with pauses when the provider asks us to slow down."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]


class SlidingWindowLimiter:
    """At most `limit` calls per `period` seconds for each key (say, one provider account), and a
    pause per key when the provider tells us to slow down.

    Built for many keys that each call rarely (every account of a provider, checked once an
    interval): a call with room in its window takes its slot at once, without a lock; a lock is
    made only while callers of one key must wait, so they go in turn. Keys idle for a whole
    window are forgotten, so a process keeps state only for the accounts it called lately.
    """

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.period = period
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # only keys with callers waiting
        self._waiting: dict[str, int] = {}
        self._swept_at = clock()

    async def acquire(self, key: str, sleep: Sleep = asyncio.sleep) -> None:
        now = self._clock()
        if now - self._swept_at >= self.period:
            self._sweep(now)
        if key not in self._locks and self._take(key, now) == 0.0:
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                # Asked again after every wait: a deferral may arrive meanwhile.
                while (wait := self._take(key, self._clock())) > 0:
                    await sleep(wait)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._locks[key]

    def _take(self, key: str, now: float) -> float:
        """Record a call for `key` now and return 0.0, or return the seconds until one may go."""
        paused = self._paused_until.get(key, 0.0) - now
        if paused > 0:
            return paused
        calls = self._calls.get(key)
        if calls is None:
            calls = self._calls[key] = deque()
        while calls and calls[0] <= now - self.period:
            calls.popleft()
        if len(calls) < self.limit:
            calls.append(now)
            return 0.0
        return calls[0] + self.period - now

    def _sweep(self, now: float) -> None:
        """Forget keys with no call in the window and pauses that are over."""
        cutoff = now - self.period
        idle = [k for k, calls in self._calls.items() if not calls or calls[-1] <= cutoff]
        for key in idle:
            if key not in self._locks:
                del self._calls[key]
        for key in [k for k, until in self._paused_until.items() if until <= now]:
            del self._paused_until[key]
        self._swept_at = now

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

    def __len__(self) -> int:
        """How many keys the limiter holds state for."""
        return len(self._calls.keys() | self._paused_until.keys())
