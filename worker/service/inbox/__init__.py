"""The inbox of provider events: stored once by (provider, event id), processed once, and what
needs a person (unroutable, failed) listed and replayed. No Celery here: callers queue ids.

`store` writes incoming events, `process` claims and applies them (one event at a time in
`apply`, the set-based writes in `writes`), `policy` holds the decisions as pure functions,
and `operator` the sweeper's query and the operator's list and replay."""

from worker.service.inbox.operator import due_for_requeue, list_events, replay
from worker.service.inbox.policy import (
    MAX_ATTEMPTS,
    RETRY_BASE_SECONDS,
    RETRY_MAX_SECONDS,
    SWEEP_GRACE,
    retry_delay,
)
from worker.service.inbox.process import ProcessReport, by_ids, process_events
from worker.service.inbox.store import (
    INSERT_POSTGRES,
    KNOWN_POSTGRES,
    Incoming,
    InsertPlan,
    Stored,
    known_params,
    store_events,
    store_stream_events,
    stream_offsets,
)

__all__ = [
    "INSERT_POSTGRES",
    "KNOWN_POSTGRES",
    "MAX_ATTEMPTS",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "SWEEP_GRACE",
    "Incoming",
    "InsertPlan",
    "ProcessReport",
    "Stored",
    "by_ids",
    "due_for_requeue",
    "known_params",
    "list_events",
    "process_events",
    "replay",
    "retry_delay",
    "store_events",
    "store_stream_events",
    "stream_offsets",
]
