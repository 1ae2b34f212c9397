"""`python -m bench.chaos [scenario...]`: the options, the suite's own PostgreSQL cluster and
Stripe simulator, every scenario chosen in turn, the table, and the exit status (1 if any
scenario failed, 2 if the suite cannot run here)."""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import bench.chaos
from bench.chaos.context import Options
from bench.chaos.report import Row, header, line, markdown, table
from bench.chaos.run import run_scenario
from bench.chaos.scenarios import SCENARIOS
from bench.chaos.servers import PostgresCluster, missing_binaries


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/chaos", description=bench.chaos.__doc__)
    parser.add_argument("scenarios", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="the short selection CI runs")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument(
        "--restart-policy",
        action="store_true",
        help="start a process again a second after it exits on its own (docker's unless-stopped)",
    )
    parser.add_argument("--rate", type=float, default=Options.rate, help="webhooks a second")
    parser.add_argument("--seconds", type=float, default=Options.seconds, help="of webhooks")
    parser.add_argument("--logs", type=Path, help="where the processes' logs go (default: temp)")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    return parser.parse_args(argv)


def chosen(args: argparse.Namespace) -> list[str]:
    if args.scenarios:
        unknown = [name for name in args.scenarios if name not in SCENARIOS]
        if unknown:
            sys.exit(f"unknown scenario(s): {', '.join(unknown)}; --list names them")
        return list(args.scenarios)
    if args.quick:
        return [name for name, s in SCENARIOS.items() if s.quick]
    return list(SCENARIOS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, scenario in SCENARIOS.items():
            print(f"{name:<18} {'quick ' if scenario.quick else '      '}{scenario.what}")
        return 0
    problem = missing_binaries()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    names = chosen(args)
    # A SIGTERM (a CI timeout) unwinds like Ctrl-C, so every server and process is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    options = Options(rate=args.rate, seconds=args.seconds, restart_policy=args.restart_policy)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="chaos-logs-"))
    print(
        f"chaos suite {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC: "
        f"{', '.join(names)}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}; restart policy {'on' if args.restart_policy else 'off'}; "
        f"logs in {logs}",
        flush=True,
    )
    from tests.fixtures.checks import CheckedStripe

    began = time.monotonic()
    sim = CheckedStripe()
    sim.start()
    cluster = PostgresCluster().init()
    rows: list[Row] = []
    print(header(), flush=True)
    try:
        for number, name in enumerate(names, start=1):
            try:
                where = logs / f"{number:02d}-{name}"
                row = run_scenario(SCENARIOS[name], options, cluster, sim, where)
            except Exception as exc:  # the suite itself broke: say so, go on with the next
                row = Row(name, failures=[f"suite error: {type(exc).__name__}: {exc}"])
                traceback.print_exc()
            rows.append(row)
            print(line(row), flush=True)
    finally:
        cluster.destroy()
        sim.stop()
    print(f"\n{table(rows)}\n")
    if args.markdown:
        print(markdown(rows) + "\n")
    failed = [row.name for row in rows if not row.passed]
    total = time.monotonic() - began
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all passed"
    print(f"{len(rows)} scenarios in {total:.0f} s; {verdict}; logs in {logs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
