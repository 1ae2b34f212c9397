"""The load in segments of a few seconds, with and without pruning in turn, until the pruner has
deleted every row past the window: each segment the same paced, open-loop webhook load
(bench.ingest's deliveries and generator), so the two sides meet the same machine, table and
autovacuum, side by side."""

from __future__ import annotations

import argparse
import queue
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from typing import Any

from bench.database import postgres_backends
from bench.ingest.deliveries import deliveries
from bench.ingest.loadgen import load
from bench.ingest.results import LoadResult
from bench.processes import cpu_seconds, descendants
from bench.retention.pruner import PruneResult

# The generator starts its clock this long after `load` is called (bench.ingest.loadgen).
LOAD_START_DELAY = 1.0


@dataclass
class Segment:
    pruning: bool
    result: LoadResult
    started: float  # time.time() of its first scheduled request
    ended: float
    cpu_ingest: float  # seconds of CPU over the segment
    cpu_postgres: float
    coverage: float = 1.0  # share of the segment the pruner was deleting (with pruning)


def run_segments(
    args: argparse.Namespace,
    base: str,
    url: str,
    ingest_pid: int,
    gate: Event,
    results: Any,  # a multiprocessing.Queue the pruner puts its PruneResult on
) -> tuple[list[Segment], PruneResult | None]:
    """Segments without and with pruning in turn, starting and ending without; returns them
    and the pruner's result (None if it had not finished within `--max-segments`)."""
    segments: list[Segment] = []
    pruned: PruneResult | None = None
    for n in range(args.max_segments):
        pruning = n % 2 == 1
        if pruning and pruned is not None:
            break
        segment = one_segment(args, base, url, ingest_pid, gate if pruning else None, n)
        if pruning:
            try:  # a batch cut short by the gate ends within a few hundred milliseconds
                pruned = results.get(timeout=0.5)
            except queue.Empty:
                pass
            if pruned is not None and pruned.finished_at is not None:
                share = (pruned.finished_at - segment.started) / (segment.ended - segment.started)
                segment.coverage = max(0.0, min(1.0, share))
        segments.append(segment)
    return segments, pruned


def one_segment(
    args: argparse.Namespace, base: str, url: str, ingest_pid: int, gate: Event | None, n: int
) -> Segment:
    """One segment of load; with `gate`, the pruner deletes from when the load's clock starts
    to when it ends."""
    batch = deliveries(int(args.rate * args.segment_seconds), f"seg{n}")
    backends = postgres_backends(url)  # the ingest's pool, the pruner's connection, autovacuum
    server = descendants(ingest_pid)
    cpu_server, cpu_db = cpu_seconds(server), cpu_by_process(backends)
    started = time.time() + LOAD_START_DELAY
    if gate is not None:
        threading.Timer(LOAD_START_DELAY, gate.set).start()
    result = load(base, batch, clients=args.clients, concurrency=256, rate=args.rate)
    if gate is not None:
        gate.clear()
    return Segment(
        pruning=gate is not None,
        result=result,
        started=started,
        ended=time.time(),
        cpu_ingest=cpu_seconds(server) - cpu_server,
        cpu_postgres=sum(
            max(0.0, cpu_seconds([pid]) - before) for pid, before in cpu_db.items()
        ),  # a backend that ended (an autovacuum worker) counts for nothing, never less
    )


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds([pid]) for pid in pids}
