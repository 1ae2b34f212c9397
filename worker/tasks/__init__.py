"""Celery tasks; each is thin: parse, call one service function, map the outcome to a result."""

from worker.tasks import accounts, integrations

__all__ = ["accounts", "integrations"]
