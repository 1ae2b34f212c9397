"""Test doubles shared by the unit tests."""

from __future__ import annotations


class FakeTime:
    """A clock that only moves when someone sleeps; every wait is recorded."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
