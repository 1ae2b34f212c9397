"""The connections worker: Celery app, tasks, ingest endpoint, read API and CLI.

`celery -A worker worker` finds the app here.
"""

from worker.celery_app import app

__all__ = ["app"]
