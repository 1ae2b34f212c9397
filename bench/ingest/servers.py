"""The servers under comparison as commands, every one `workers` uvicorn processes, and running
one until its health path answers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.processes import Process, answers, free_port


def uvicorn_args(target: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def ours_command(port: int, workers: int) -> list[str]:
    """Our ingest as deployed: `connections ingest --workers N`."""
    return [
        sys.executable,
        "-m",
        "worker.cli",
        "ingest",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def server_commands(ours: list[str], workers: int) -> dict[str, list[str]]:
    """Every server by the name the report gives it, each on a port of its own."""
    return {
        "ours (inbox)": ours,
        "ours, no group commit": uvicorn_args(
            "bench.ingest.apps:unbatched_app", free_port(), workers
        ),
        "no-op (ceiling)": uvicorn_args("bench.ingest.apps:noop_app", free_port(), workers),
        "no-op, Starlette": uvicorn_args(
            "bench.ingest.apps:starlette_noop_app", free_port(), workers
        ),
        "textbook (delay)": uvicorn_args("bench.ingest.apps:textbook_app", free_port(), workers),
    }


def base_url(command: list[str]) -> str:
    return f"http://127.0.0.1:{command[command.index('--port') + 1]}"


@contextmanager
def running(
    name: str, args: list[str], env: dict[str, str], logs: Path, ready_url: str | None
) -> Iterator[Process]:
    """`args` running (logging to `logs/<name>.log`) until the block ends; with `ready_url`,
    from when that answers without a server error."""
    child = Process(name, args, env, logs)
    try:
        ok = ready_url is None or answers(
            ready_url, 30, alive=child.alive, accept=lambda status: status < 500
        )
        if not ok:
            raise RuntimeError(f"{args} did not start; see {child.log_path}")
        yield child
    finally:
        child.stop()
