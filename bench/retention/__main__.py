"""`python -m bench.retention`: the options, the ingest and the pruner started, the segments run
and the figures printed (see bench/README.md)."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import redis
from cryptography.fernet import Fernet

import bench.retention
from bench.database import drop_database, fresh_database
from bench.ingest.deliveries import SHOPIFY_SECRET, STRIPE_SECRET, deliveries
from bench.ingest.loadgen import load
from bench.ingest.seed import seed_accounts
from bench.ingest.servers import base_url, ours_command, running
from bench.processes import free_port
from bench.retention import pruner
from bench.retention.pruner import PruneResult
from bench.retention.report import print_comparison, print_pruner, print_segments
from bench.retention.seed import counts, seed
from bench.retention.segments import Segment, run_segments
from worker.service.retention import BATCH

WINDOW_DAYS = 14  # INBOX_RETENTION's default
OLD_DAYS = 20  # the seeded rows past it were processed about this long ago


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.retention", description=bench.retention.__doc__
    )
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rows", type=int, default=1_000_000, help="processed rows to prune")
    parser.add_argument("--young", type=int, default=100_000, help="processed rows to keep")
    parser.add_argument("--rate", type=float, default=1000.0, help="offered webhooks per second")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--max-segments", type=int, default=121)
    parser.add_argument("--batch", type=int, default=BATCH, help="rows per prune statement")
    parser.add_argument(
        "--rest", type=float, default=0.0, help="pause after each batch, times its duration"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of seeding and pruning")
    parser.add_argument("--server-workers", type=int, default=2, help="uvicorn processes")
    parser.add_argument("--clients", type=int, default=1, help="paced generator processes")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-retention-"))
    url = fresh_database(args.admin_url, f"bench_retention_{uuid.uuid4().hex[:8]}")
    key = Fernet.generate_key().decode()
    broker = redis.Redis.from_url(args.redis_url)
    broker.flushdb()
    env = {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": url,
        "CONNECTIONS_BROKER_URL": args.redis_url,
        "CONNECTIONS_RESULT_BACKEND": args.redis_url,
        "CONNECTIONS_ENCRYPTION_KEYS": key,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    print(f"machine: {os.cpu_count()} cores; logs in {logs}")
    try:
        seed_accounts(url, key)
        ours = ours_command(free_port(), args.server_workers)
        base = base_url(ours)
        segments: list[Segment] = []
        with running("ingest", ours, env, logs, f"{base}/healthz") as ingest:
            load(base, deliveries(2000, "warm"), clients=1, concurrency=16)
            print(
                f"load: {args.rate:.0f} webhooks/s offered (open loop, half Stripe, half Shopify)"
                f" to `connections ingest --workers {args.server_workers}`, in segments of "
                f"{args.segment_seconds:.0f} s taking turns without and with the pruner deleting"
                f" {args.rows:,} processed inbox rows past the window in batches of "
                f"{args.batch:,}; {args.repeat} rounds\n"
            )
            for round_ in range(args.repeat):
                young = args.young if round_ == 0 else 0
                seed(url, args.rows, young, old_days=OLD_DAYS, young_days=1, round_=round_)
                done, pruned = prune_under_load(args, url, base, ingest.pid, round_)
                segments += done
                print_pruner(pruned, args.rows)
                past, inside = counts(url, WINDOW_DAYS)
                print(f"check: {past:,} processed rows left past the window, {inside:,} kept\n")
        print_comparison(segments)
        print(f"then VACUUM inbound_events (no load): {vacuum_seconds(url):.1f} s")
    finally:
        broker.flushdb()
        drop_database(args.admin_url, url)


def prune_under_load(
    args: argparse.Namespace, url: str, base: str, ingest_pid: int, round_: int
) -> tuple[list[Segment], PruneResult | None]:
    """One round: a pruner process started, the segments run, the pruner joined."""
    context = multiprocessing.get_context("spawn")
    gate, results = context.Event(), context.Queue()
    deleting = context.Process(
        target=pruner.run, args=(url, WINDOW_DAYS, args.batch, args.rest, gate, results)
    )
    deleting.start()
    try:
        segments, pruned = run_segments(args, base, url, ingest_pid, gate, results)
    finally:
        gate.set()  # an unfinished pruner runs to its end rather than hang
        deleting.join(timeout=600)
    print(f"round {round_ + 1}:")
    print_segments(segments)
    return segments, pruned


def vacuum_seconds(url: str) -> float:
    """What the deleted rows cost afterwards: autovacuum's work, which this machine's PostgreSQL
    leaves to us (autovacuum is off on it)."""
    started = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM inbound_events")
    return time.monotonic() - started


if __name__ == "__main__":
    main()
