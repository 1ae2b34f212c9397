"""The connections worker: Celery app, tasks, ingest endpoint, read API and CLI.

`celery -A worker worker` finds the app here.
"""

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    # The app is made on first use, so `connections` checks its settings (and says in one line
    # what is wrong with them) before anything reads them.
    if name == "app":
        from worker.celery_app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
