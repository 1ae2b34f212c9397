"""The figures as bench/README.md's scheduled-checks section (`--write` replaces it)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from bench.processes import ROOT


def write_readme(section: str) -> None:
    path = ROOT / "bench" / "README.md"
    start, end = "<!-- checks-bench:start -->", "<!-- checks-bench:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section.rstrip()}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def section(
    f: dict[str, Any], args: argparse.Namespace, vs_naive: str, of_ceiling: float, naive: Any
) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    naive_line = (
        f"| naive: one task per account, one synchronous httpx call each | {naive:,.0f} checks/s "
        f"(measured on {args.naive_sample:,} accounts; 100,000 extrapolated to "
        f"~{100_000 / naive:,.0f} s) |"
        if naive
        else "| naive | not measured |"
    )
    t = f["transports"]
    rows = [
        (
            f"time to check every account once ({f['kinds']}), from when they are all due",
            f"**{f['design_seconds']} s** ({f['design_rate']:,} checks/s)",
        ),
        (
            f"ceiling: the simulators' raw capacity, the same client (the checks' `HttpLayer`, "
            f"httpx requests over httpx-aiohttp), {args.workers * args.concurrency} processes x "
            f"64 in flight",
            f"{f['ceiling_rate']:,} requests/s",
        ),
        (
            f"bound: the same with bare aiohttp, {args.workers * args.concurrency} processes",
            f"{f['bound_rate']:,} requests/s",
        ),
        ("design vs naive", vs_naive),
        ("design vs ceiling", f"{of_ceiling:.0%}"),
        ("peak RSS of any worker process", f"{f['peak_rss_mb']} MB"),
        (
            "one process, 100 requests in flight: httpx / httpx over aiohttp / `HttpLayer` / "
            "aiohttp",
            f"{t['httpx']:,} / {t['httpx-aiohttp']:,} / {t['layer']:,} / {t['aiohttp']:,} "
            f"requests/s",
        ),
        ("load average (1 min) when the run started", f"{f['load']:.2f}"),
    ]
    table = "\n".join(f"| {a} | {b} |" for a, b in rows[:1]) + "\n" + naive_line + "\n"
    table += "\n".join(f"| {a} | {b} |" for a, b in rows[1:])
    return f"""## Scheduled checks (`bench/checks/`)

Command: `bash scripts/bench checks --write` (= `.venv/bin/python -m bench.checks --write`)
(defaults: {f["accounts"]:,} accounts, {args.workers} Celery worker with {args.concurrency} pool
processes, beat, {args.sims} simulator processes answering in {args.latency * 1000:.0f} ms,
{args.bad_share:.0%} of accounts with rejected credentials). Measured {when} on this shared
2-core machine, PostgreSQL, Redis and the simulators on the same machine; figures move by tens
of percent from run to run.

| what | figure |
|---|---|
{table}

Targets: all 100,000 in <= 60 s; >= 5x naive; >= half the ceiling; <= 250 MB per process.
"""
