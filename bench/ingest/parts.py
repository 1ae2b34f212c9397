"""The first two parts, against every server at once: throughput (wrk rounds, the servers taking
turns) and latency (the paced generator at the offered rates)."""

from __future__ import annotations

import argparse

import redis

from bench.database import postgres_backends
from bench.ingest.deliveries import deliveries
from bench.ingest.loadgen import load
from bench.ingest.results import LoadResult, print_medians
from bench.ingest.wrk import wrk_load
from bench.processes import cpu_seconds, descendants


def warm(bases: dict[str, str]) -> None:
    for name, base in bases.items():
        load(base, deliveries(1000, f"warm{len(name)}"), clients=1, concurrency=16)


def throughput(
    args: argparse.Namespace,
    url: str,
    broker: redis.Redis,
    bases: dict[str, str],
    pids: dict[str, int],
) -> tuple[list[str], int]:
    """Prints each run and the medians; returns the event ids sent to ours, and how many of
    them may have been in flight (unanswered) when wrk stopped."""
    ours_ids: list[str] = []
    in_flight = 0
    # Rounds take turns, so a neighbour's load on this shared machine hits every
    # server alike; medians are reported.
    runs: dict[str, list[tuple[LoadResult, float, float]]] = {n: [] for n in bases}
    # Requests made per run: enough for twice the server's rate in the round before.
    pools = dict.fromkeys(bases, args.pool)
    for round_ in range(args.rounds):
        for name, base in bases.items():
            batch = deliveries(pools[name], f"tp{round_}{len(name)}{name[:4]}")
            backends = postgres_backends(url)
            server = descendants(pids[name])
            cpu_server, cpu_db = cpu_seconds(server), cpu_seconds(backends)
            result = wrk_load(base, batch, seconds=args.seconds, connections=args.connections)
            served = max(1, sum(result.statuses.values()))
            pools[name] = max(20_000, 2 * served)
            if len(result.sent_at) >= len(batch):
                pools[name] = 2 * len(batch)
            server_us = (cpu_seconds(server) - cpu_server) / served * 1e6
            db_us = (cpu_seconds(backends) - cpu_db) / served * 1e6
            runs[name].append((result, server_us, db_us))
            print(
                result.line(f"{name} max")
                + f"   CPU/request: server {server_us:.0f} us, PostgreSQL {db_us:.0f} us"
            )
            if name.startswith("ours"):
                ours_ids += list(result.sent_at)
                in_flight += args.connections
        broker.flushdb()
    print_medians(runs)
    return ours_ids, in_flight


def latency(args: argparse.Namespace, broker: redis.Redis, bases: dict[str, str]) -> list[str]:
    """Prints each server at each offered rate; returns the event ids sent to ours."""
    ours_ids: list[str] = []
    for name, base in bases.items():
        for rate in [float(r) for r in args.latency_rates.split(",")]:
            paced = deliveries(int(rate * args.latency_seconds), f"lat{rate}{name[:4]}")
            paced_result = load(base, paced, clients=args.clients, concurrency=256, rate=rate)
            print(paced_result.line(f"{name} @{rate:.0f}/s"))
            if name.startswith("ours"):
                ours_ids += [d[3] for d in paced]
        broker.flushdb()
    return ours_ids
