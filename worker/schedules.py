"""What beat runs, and how often. Each periodic task is cheap and safe to run from several beats:
the database decides what is due, so a duplicate tick does no harm."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
