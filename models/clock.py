"""The one clock: every timestamp written comes from `utc_now()`, which tests can freeze."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def utc_now() -> datetime:
    return _now()


def set_clock(now: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests); `None` restores the real one."""
    global _now
    _now = now if now is not None else (lambda: datetime.now(UTC))
