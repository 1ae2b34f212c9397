"""The two runs: the design (the real worker and beat checking every account once they are all
due) and the naive design (one task per account, on a sample)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.checks.progress import wait_checked
from bench.checks.seed import make_due
from bench.checks.workers import RssSampler, wait_ready_workers
from bench.processes import Process, celery_command, stop_all


def run_design(
    url: str, env: dict[str, str], logs: Path, args: argparse.Namespace, total: int
) -> dict[str, Any]:
    workers = [
        Process(
            "design",
            celery_command(
                "worker",
                "-Q",
                "checks",
                f"--concurrency={args.concurrency}",
                "--loglevel=WARNING",
                f"--hostname=bench-{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ),
            env,
            logs,
        )
        for n in range(args.workers)
    ]
    beat = Process(
        "beat",
        celery_command("beat", "--loglevel=WARNING", "-s", str(logs / "beat-schedule")),
        env,
        logs,
    )
    try:
        wait_ready_workers(workers, args.concurrency)
        sampler = RssSampler(lambda: [w.pid for w in workers])
        sampler.start()
        started = make_due(url)
        seconds, done = wait_checked(url, started, total, args.timeout)
        peak = sampler.stop()
    finally:
        stop_all([beat, *workers], timeout=30)
    return {"seconds": seconds, "checked": done, "peak_rss_mb": peak}


def run_naive(
    url: str, env: dict[str, str], logs: Path, args: argparse.Namespace, sample: int
) -> dict[str, Any]:
    workers = [
        Process(
            "naive",
            celery_command(
                "worker",
                "-Q",
                "naive",
                "-I",
                "bench.naive",
                f"--concurrency={args.concurrency}",
                "--loglevel=WARNING",
                f"--hostname=naive-{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ),
            env,
            logs,
        )
        for n in range(args.workers)
    ]
    try:
        wait_ready_workers(workers, args.concurrency)
        from celery import Celery

        client = Celery("bench", broker=env["CONNECTIONS_BROKER_URL"])
        client.conf.update(task_serializer="json")
        with psycopg.connect(url) as conn:
            ids = [
                str(r[0])
                for r in conn.execute(
                    "SELECT id FROM accounts ORDER BY random() LIMIT %s", (sample,)
                ).fetchall()
            ]
        # What beat would do in the naive design: one task per due account.
        started = datetime.now(UTC)
        with client.producer_or_acquire() as producer:
            for account_id in ids:
                client.send_task(
                    "bench.naive_check",
                    args=[account_id],
                    queue="naive",
                    producer=producer,
                    ignore_result=True,
                )
        in_list = "id IN (" + ",".join(f"'{i}'" for i in ids) + ")"
        seconds, done = wait_checked(url, started, len(ids), args.timeout, in_list)
    finally:
        stop_all(workers, timeout=30)
    return {"seconds": seconds, "checked": done, "sample": len(ids)}
