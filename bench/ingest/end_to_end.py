"""The last part: our ingest with a real Celery worker (`-Q events`) and the relay behind it,
paced and then in a wrk burst, counted from request to `processed_at`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import psycopg
import redis

from bench.database import postgres_backends
from bench.ingest.deliveries import deliveries
from bench.ingest.loadgen import load
from bench.ingest.results import pct
from bench.ingest.servers import base_url, running
from bench.ingest.verify import (
    processed_burst,
    processed_times,
    verify_stored_once,
    wait_processed,
)
from bench.ingest.wrk import wrk_load
from bench.processes import celery_command, cpu_seconds, descendants


def end_to_end(
    args: argparse.Namespace,
    url: str,
    env: dict[str, str],
    logs: Path,
    ours: list[str],
    broker: redis.Redis,
) -> None:
    print("\nend to end: ingest + celery worker (-Q events) + relay to the Redis stream")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE inbound_events, outbox_events")
    worker = celery_command(
        "worker",
        "-Q",
        "events",
        f"--concurrency={args.worker_concurrency}",
        "--loglevel=WARNING",
        "--without-gossip",
        "--without-mingle",
    )
    base = base_url(ours)
    with (
        running("ours-e2e", ours, env, logs, f"{base}/healthz") as ingest_child,
        running("worker", worker, env, logs, None) as worker_child,
    ):
        time.sleep(4.0)
        warm = deliveries(1000, "e2ewarm")
        load(base, warm, clients=1, concurrency=16)
        wait_processed(url, [d[3] for d in warm], 60)

        paced = deliveries(int(args.e2e_rate * args.e2e_seconds), "e2epaced")
        result = load(base, paced, clients=args.clients, concurrency=256, rate=args.e2e_rate)
        print(result.line(f"ingest @{args.e2e_rate:.0f}/s"))
        wait_processed(url, list(result.sent_at), 120)
        lat, _ = processed_times(url, result.sent_at)
        print(
            f"request-to-processed @{args.e2e_rate:.0f}/s: p50 {pct(lat, 50):.1f} ms, "
            f"p99 {pct(lat, 99):.1f} ms, max {pct(lat, 100):.1f} ms ({len(lat)} events)"
        )
        print("check:", verify_stored_once(url, list(result.sent_at), processed=True))

        burst = deliveries(args.pool, "e2eburst")
        ingest_pids = descendants(ingest_child.pid)
        worker_pids = descendants(worker_child.pid)
        backends = postgres_backends(url)
        cpu_before = [
            cpu_seconds(ingest_pids),
            cpu_seconds(worker_pids),
            cpu_seconds(backends),
        ]
        result = wrk_load(base, burst, seconds=args.e2e_burst_seconds, connections=args.connections)
        print(result.line(f"ingest burst {args.e2e_burst_seconds:.0f} s"))
        ids = list(result.sent_at)
        wait_processed(url, ids, 300)
        processed, last = processed_burst(url, ids)
        start = min(result.sent_at.values()) if result.sent_at else time.time()
        print(
            f"end to end burst: {processed} events processed in {last - start:.1f} s "
            f"= {processed / (last - start):.0f} events/s"
        )
        cpu_after = [
            cpu_seconds(ingest_pids),
            cpu_seconds(worker_pids),
            cpu_seconds(backends + [p for p in postgres_backends(url) if p not in backends]),
        ]
        ingest_us, worker_us, db_us = (
            (after - before) / max(1, processed) * 1e6
            for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        print(
            f"CPU per event: ingest {ingest_us:.0f} us, worker processes {worker_us:.0f} us "
            f"(process + relay), PostgreSQL {db_us:.0f} us"
        )
        print("check:", verify_stored_once(url, ids, True, args.connections))
        published = broker.xlen("connections:events")
        print(f"outbox relayed to connections:events: {published} entries")
