"""What beat runs, and how often. Each periodic task is cheap and safe to run from several beats:
the database decides what is due, so a duplicate tick does no harm."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Provider events still unprocessed a minute after they arrived lost their queue message.
    "events-sweep": {"task": "events.sweep", "schedule": 30.0, "options": {"expires": 30}},
    # Workers kick the relay after processing; this publishes whatever a kick missed.
    "events-relay": {"task": "events.relay", "schedule": 2.0, "options": {"expires": 10}},
    # Claims the accounts whose check is due and queues them in batches (docs/checks.md). Every
    # second: an idle tick is one indexed query, and a lost batch waits at most its lease plus
    # one tick. It queues behind the batches it made, so a busy worker claims no more.
    "checks-schedule": {"task": "checks.schedule", "schedule": 1.0, "options": {"expires": 30}},
    # Deletes what is past its retention window, in short batches within a time budget
    # (worker/service/retention.py); an idle run is a few index probes. Expires at the next.
    "retention-prune": {"task": "retention.prune", "schedule": 60.0, "options": {"expires": 60}},
}
