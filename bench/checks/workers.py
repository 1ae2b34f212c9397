"""Watching a run's Celery workers: until every pool process exists, and their peak memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bench.processes import Process, descendants, rss_mb


def wait_ready_workers(workers: list[Process], pool: int) -> None:
    # --loglevel=WARNING hides "ready.": wait for every pool process to exist instead.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(descendants(w.pid)) >= pool + 1 for w in workers):
            time.sleep(3)  # imports done, consumers attached
            return
        time.sleep(0.2)
    raise RuntimeError(f"workers did not start; see {workers[0].log_path}")


class RssSampler(threading.Thread):
    """The largest RSS seen of any process under the given roots."""

    def __init__(self, roots: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.roots = roots
        self.peak: dict[int, float] = {}
        self.running = True

    def run(self) -> None:
        while self.running:
            for root in self.roots():
                for pid in descendants(root):
                    self.peak[pid] = max(self.peak.get(pid, 0.0), rss_mb(pid))
            time.sleep(0.5)

    def stop(self) -> float:
        self.running = False
        self.join(timeout=5)
        return max(self.peak.values(), default=0.0)
