"""`python -m bench.ingest`: the options, the environment every server shares, and the parts in
order (see bench/README.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import redis
from cryptography.fernet import Fernet

import bench.ingest
from bench.database import drop_database, fresh_database
from bench.ingest.deliveries import SHOPIFY_SECRET, STRIPE_SECRET
from bench.ingest.end_to_end import end_to_end
from bench.ingest.parts import latency, throughput, warm
from bench.ingest.seed import seed_accounts
from bench.ingest.servers import base_url, ours_command, running, server_commands
from bench.ingest.verify import verify_stored_once
from bench.processes import free_port


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=bench.ingest.__doc__
    )
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput run (wrk)")
    parser.add_argument(
        "--pool", type=int, default=250_000, help="signed requests made for the first wrk runs"
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs per server")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--server-workers", type=int, default=2, help="uvicorn processes of every server"
    )
    parser.add_argument("--clients", type=int, default=1, help="paced generator processes")
    parser.add_argument(
        "--latency-rates", default="1000,2000", help="offered rates (per second) for latency"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-rate", type=float, default=1000.0)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument("--e2e-burst-seconds", type=float, default=8.0)
    parser.add_argument("--worker-concurrency", type=int, default=4)
    parser.add_argument(
        "--parts", default="throughput,latency,e2e", help="which parts to run, comma-separated"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    parts = set(args.parts.split(","))
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed for the throughput runs: apt-get install wrk")

    logs = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    url = fresh_database(args.admin_url, f"bench_ingest_{uuid.uuid4().hex[:8]}")
    key = Fernet.generate_key().decode()
    seed_accounts(url, key)
    broker = redis.Redis.from_url(args.redis_url)
    broker.flushdb()
    env = {
        **os.environ,
        "CONNECTIONS_DATABASE_URL": url,
        "CONNECTIONS_BROKER_URL": args.redis_url,
        "CONNECTIONS_RESULT_BACKEND": args.redis_url,
        "CONNECTIONS_EVENTS_REDIS_URL": args.redis_url,
        "CONNECTIONS_ENCRYPTION_KEYS": key,
        "CONNECTIONS_SHOPIFY_CLIENT_SECRET": SHOPIFY_SECRET,
        "CONNECTIONS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "CONNECTIONS_LOG_FORMAT": "json",
        "CONNECTIONS_LOG_LEVEL": "WARNING",
        "BENCH_BROKER_URL": args.redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    workers = args.server_workers
    print(f"machine: {os.cpu_count()} cores; logs in {logs}")
    print(
        f"throughput: wrk, 1 thread x {args.connections} connections, {args.seconds:.0f} s per "
        f"run, signed webhooks (half Stripe, half Shopify); every server {workers} uvicorn "
        f"processes\n"
    )
    try:
        ours = ours_command(free_port(), workers)
        ours_ids: list[str] = []
        in_flight = 0
        with contextlib.ExitStack() as stack:
            bases: dict[str, str] = {}
            pids: dict[str, int] = {}
            for name, command in server_commands(ours, workers).items():
                base = base_url(command)
                log = f"{name.split()[0]}-{len(bases)}"
                child = stack.enter_context(running(log, command, env, logs, f"{base}/healthz"))
                bases[name], pids[name] = base, child.pid
            warm(bases)
            if "throughput" in parts:
                ours_ids, in_flight = throughput(args, url, broker, bases, pids)
            if "latency" in parts:
                ours_ids += latency(args, broker, bases)
        print("check, ours:", verify_stored_once(url, ours_ids, False, in_flight))

        if "e2e" in parts:
            end_to_end(args, url, env, logs, ours, broker)
    finally:
        broker.flushdb()
        drop_database(args.admin_url, url)


if __name__ == "__main__":
    main()
