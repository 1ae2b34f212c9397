"""The pruner under test, in a process of its own as in a Celery worker: the retention code's
batches (`worker.service.retention.prune_batch`, resuming where the last batch ended, as a run
of `retention.prune` does), run only while the gate is open, so segments with and without
pruning can take turns over one load."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.synchronize import Event
from typing import Any


@dataclass
class PruneResult:
    deleted: int = 0
    batches: list[float] = field(default_factory=list)  # seconds each batch's transaction took
    active: float = 0.0  # seconds spent deleting (gate open)
    rested: float = 0.0  # seconds of the pauses between batches (--rest)
    finished_at: float | None = None  # time.time() when the last short batch came back


def run(url: str, window_days: float, batch: int, rest: float, gate: Event, results: Any) -> None:
    """Delete the processed inbox rows past a window of `window_days` in batches of `batch`,
    each only while `gate` is set; put the PruneResult on the `results` queue when done."""
    from models import Database, utc_now
    from worker.service import retention

    db = Database(url)
    kinds = {kind.name: kind for kind in retention.KINDS}
    windows = retention.Windows(*(timedelta(days=window_days),) * 4)
    cut = retention.cutoffs(utc_now(), windows)
    result = PruneResult()
    newest = None
    kind = kinds["processed_events"]
    while True:
        gate.wait()
        started = time.monotonic()
        deleted, newest = retention.prune_batch(db, kind, cut.processed_events, batch, newest)
        spent = time.monotonic() - started
        result.batches.append(spent)
        result.active += spent
        result.deleted += deleted
        if deleted < batch:
            result.finished_at = time.time()
            break
        time.sleep(spent * rest)
        result.rested += spent * rest
    db.dispose()
    results.put(result)
