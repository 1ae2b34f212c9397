"""Celery tasks; each is thin: parse, call one service function, map the outcome to a result."""

from worker.tasks import accounts, checks, events, integrations

__all__ = ["accounts", "checks", "events", "integrations"]
