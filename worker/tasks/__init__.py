"""Celery tasks; each is thin: parse, call one service function, map the outcome to a result.

The job tasks (`accounts.*`, `integrations.*`) are made from the job table in `table.py`.
"""

from worker.tasks import checks, events, jobtask, retention, revoke

__all__ = ["checks", "events", "jobtask", "retention", "revoke"]
