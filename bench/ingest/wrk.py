"""The full-speed load generator: wrk, a C program, with `bench/webhooks.lua` sending the
pre-built requests."""

from __future__ import annotations

import subprocess
import tempfile
import time

from bench.ingest.deliveries import Delivery, raw_request
from bench.ingest.results import LoadResult
from bench.processes import ROOT

WRK_SCRIPT = ROOT / "bench" / "webhooks.lua"


def wrk_load(
    url: str, batch: list[Delivery], *, seconds: float, connections: int, threads: int = 1
) -> LoadResult:
    """Closed loop at full speed for `seconds`, from wrk: a C load generator takes a fraction of
    the CPU an asyncio one does, and on two shared cores that CPU is the servers'. Requests are
    built and signed beforehand (`bench/webhooks.lua` sends each once, in order). `sent_at` holds
    every id sent, stamped with the run's start."""
    host = url.split("//", 1)[1]
    shares = [batch[i::threads] for i in range(threads)]
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        prefix = f"{folder}/requests"
        for i, share in enumerate(shares):
            with open(f"{prefix}-{i}.http", "wb") as out:
                for delivery in share:
                    out.write(raw_request(host, delivery) + b"\0")
        started = time.time()
        done = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",  # whole seconds only
                "--timeout",
                "30s",
                "-s",
                str(WRK_SCRIPT),
                url,
                "--",
                prefix,
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    sent: dict[str, float] = {}
    summary: list[int] = []
    for line in done.stdout.splitlines():
        words = line.split()
        if words[:2] == ["BENCH", "thread"]:
            thread, count = int(words[2]), int(words[4])
            if count >= len(shares[thread]):
                print(f"  (wrk thread {thread} ran out of its {count} requests: a lower bound)")
            sent.update((d[3], started) for d in shares[thread][:count])
        elif words[:2] == ["BENCH", "summary"]:
            summary = [int(w) for w in words[2:]]
    if not summary:
        raise RuntimeError(f"wrk printed no summary: {done.stdout}\n{done.stderr}")
    duration, answered, bad_status, *socket_errors, p50, p99, worst = summary
    statuses = {200: answered - bad_status}
    if bad_status:
        statuses[400] = bad_status  # "400 or above": wrk counts them, not which
    if sum(socket_errors):
        statuses[0] = sum(socket_errors)
    return LoadResult(
        ok=answered - bad_status,
        statuses=statuses,
        seconds=duration / 1e6,
        latencies=[],
        sent_at=sent,
        percentiles={50: p50 / 1000, 99: p99 / 1000, 100: worst / 1000},
    )
