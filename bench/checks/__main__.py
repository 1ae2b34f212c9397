"""`python -m bench.checks`: the options, the environment the workers share, and the runs in
order: the transports, the ceiling and bound, the design, the naive design (see
bench/README.md)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import redis
from cryptography.fernet import Fernet

import bench.checks
from bench.checks.clients import measure_clients
from bench.checks.report import section, write_readme
from bench.checks.runs import run_design, run_naive
from bench.checks.seed import seed
from bench.checks.simulator import start_simulators
from bench.database import fresh_database


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.checks", description=bench.checks.__doc__
    )
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=3_000)
    parser.add_argument("--workers", type=int, default=1, help="celery worker processes")
    parser.add_argument("--concurrency", type=int, default=3, help="pool processes per worker")
    parser.add_argument("--sims", type=int, default=2, help="simulator processes")
    parser.add_argument("--latency", type=float, default=0.020)
    parser.add_argument("--bad-share", type=float, default=0.01)
    parser.add_argument("--port", type=int, default=18_431)
    parser.add_argument("--redis-db", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "CONNECTIONS_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--write", action="store_true", help="write the figures to bench/README.md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-checks-"))
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    print(f"logs in {logs}; load average {load:.2f}")
    sims = start_simulators(args.sims, args.port, args.latency)
    try:
        key = Fernet.generate_key().decode()
        url = fresh_database(args.admin_url, "connections_bench")
        t = time.monotonic()
        kinds = seed(url, key, args.accounts, args.bad_share)
        print(f"seeded {args.accounts} accounts {kinds} in {time.monotonic() - t:.1f}s")
        broker = f"redis://127.0.0.1:6379/{args.redis_db}"
        redis.Redis.from_url(broker).flushdb()
        simulators_url = f"http://127.0.0.1:{args.port}"
        env = {
            **os.environ,
            "CONNECTIONS_DATABASE_URL": url,
            "CONNECTIONS_BROKER_URL": broker,
            "CONNECTIONS_RESULT_BACKEND": broker,
            "CONNECTIONS_ENCRYPTION_KEYS": key,
            "CONNECTIONS_CHECK_INTERVAL_SECONDS": "3600",
            "CONNECTIONS_STRIPE_API_BASE_URL": simulators_url,
            "CONNECTIONS_SHOPIFY_BASE_URL": simulators_url + "/{shop}",
            "CONNECTIONS_FORTNOX_API_BASE_URL": simulators_url,
            "CONNECTIONS_LOG_FORMAT": "json",
            "CONNECTIONS_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "CONNECTIONS_VAR_DIR": str(logs / "var"),
            "PYTHONUNBUFFERED": "1",
        }
        processes = args.workers * args.concurrency

        transports = {
            kind: measure_clients(args.port, 1, 4.0, 100, kind)
            for kind in ("httpx", "httpx-aiohttp", "layer", "aiohttp")
        }
        print(
            "one process, 100 in flight: "
            + ", ".join(f"{k} {v:,.0f}/s" for k, v in transports.items())
        )
        ceiling = measure_clients(args.port, processes, 8.0, 64, "layer")
        print(f"ceiling ({processes} processes, the checks' HTTP layer): {ceiling:,.0f} req/s")
        # What bounds any client here: the simulators' capacity against bare aiohttp.
        bound = measure_clients(args.port, processes, 8.0, 64, "aiohttp")
        print(f"bound ({processes} processes, bare aiohttp): {bound:,.0f} req/s")

        design = run_design(url, env, logs, args, args.accounts)
        rate = design["checked"] / design["seconds"]
        print(
            f"design: {design['checked']:,} accounts checked in {design['seconds']:.1f}s "
            f"= {rate:,.0f}/s; peak RSS {design['peak_rss_mb']:.0f} MB per process"
        )
        naive_rate = None
        if not args.skip_naive:
            redis.Redis.from_url(broker).flushdb()
            naive = run_naive(url, env, logs, args, args.naive_sample)
            naive_rate = naive["checked"] / naive["seconds"]
            print(
                f"naive: {naive['checked']:,} of a {naive['sample']:,} sample in "
                f"{naive['seconds']:.1f}s = {naive_rate:,.0f}/s; 100,000 would take "
                f"~{100_000 / naive_rate:,.0f}s (extrapolated)"
            )
        figures = {
            "accounts": args.accounts,
            "kinds": kinds,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "design_seconds": round(design["seconds"], 1),
            "design_rate": round(rate),
            "peak_rss_mb": round(design["peak_rss_mb"]),
            "ceiling_rate": round(ceiling),
            "bound_rate": round(bound),
            "naive_rate": round(naive_rate) if naive_rate else None,
            "transports": {k: round(v) for k, v in transports.items()},
            "load": load,
        }
        vs_naive = f"{rate / naive_rate:.1f}x" if naive_rate else "not measured"
        print(f"ratios: {vs_naive} the naive design; {rate / ceiling:.0%} of the ceiling")
        print(json.dumps(figures))
        if args.write:
            write_readme(section(figures, args, vs_naive, rate / ceiling, naive_rate))
    finally:
        for sim in sims:
            sim.terminate()


if __name__ == "__main__":
    main()
