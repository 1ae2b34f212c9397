"""The commands that run a process: migrate, the ingest server, the Fortnox listener, and `dev`
(everything on one machine)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import click
import structlog

from worker.cli.base import open_deps
from worker.service.deps import Deps
from worker.settings import get_settings

log = structlog.get_logger(__name__)

HOST = click.option(
    "--host", default="127.0.0.1", show_default=True, help="The address to listen on."
)
PORT = click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The port to listen on.",
)


@click.command()
def migrate() -> None:
    """Run database migrations to head."""
    from models.migrate import upgrade
    from worker.runtime import check_database, load_settings

    settings = load_settings()
    check_database(settings.database_url)  # one clear line, not Alembic's traceback
    upgrade(settings.database_url)
    click.echo("database is at the newest migration")


@click.command()
@HOST
@PORT
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many server processes.",
)
def ingest(host: str, port: int, workers: int) -> None:
    """Serve the ingest endpoint and the internal read API."""
    from worker.observe.group import start_group
    from worker.runtime import close_deps, started_deps

    start_group("ingest")  # before anything imports prometheus_client: its workers share counts

    close_deps(started_deps())  # fail here, once, with one line; each server process opens its own
    import uvicorn

    from worker.logconfig import configure_logging, uvicorn_log_config

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        "worker.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # Applied in each server process, `--workers N`'s spawned children too: JSON from all.
        log_config=uvicorn_log_config(settings.log_format, settings.log_level),
        access_log=False,
    )


@click.command("fortnox-stream")
def fortnox_stream() -> None:
    """Listen to the Fortnox topics stream; every event goes into the inbox."""
    from worker.logconfig import configure_logging

    deps = open_deps()
    settings = get_settings()
    # A long-running process: its prints and uncaught errors become log lines too.
    configure_logging(settings.log_format, settings.log_level, whole_process=True)
    run_fortnox_stream(deps)


def run_fortnox_stream(deps: Deps) -> None:
    """The listener, until SIGTERM or SIGINT, with the options the registry's Fortnox settings
    give it."""
    from connectors.fortnox import FortnoxSettings
    from worker.celery_app import app as celery
    from worker.observe.serve import serve_alone
    from worker.streams.fortnox import FortnoxListener, options_from
    from worker.tasks.events import enqueue

    provider = deps.connectors.settings["fortnox"]
    assert isinstance(provider, FortnoxSettings)
    options = options_from(provider, deps.db)
    serve_alone("stream")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        listener = FortnoxListener(deps, options, lambda ids: enqueue(celery, ids))
        log.info("fortnox_stream_starting", url=options.url, topics=options.topics)
        await listener.run(stop)
        log.info("fortnox_stream_stopped", stored=listener.stored)

    asyncio.run(main())


@click.command()
@HOST
@PORT
def dev(host: str, port: int) -> None:
    """Everything on one machine on the embedded defaults: migrations, ingest, worker and beat."""
    from models.migrate import upgrade

    settings = get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    click.echo(f"database ready: {settings.database_url}")
    worker = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--beat",
        "--pool=solo",
        "--loglevel=INFO",
        "--schedule",
        str(settings.var_dir / "beat-schedule"),
    ]
    ingest = [sys.executable, "-m", "worker.cli", "ingest", "--host", host, "--port", str(port)]
    children = [
        subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for cmd in (worker, ingest)
    ]
    click.echo(f"worker and beat running; ingest and read API on http://{host}:{port}")
    sys.exit(supervise(children))


def supervise(children: list[subprocess.Popen[bytes]]) -> int:
    """Run until one child ends or we are told to stop; then stop them all. 0 if all ended well."""

    def stop(*_: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
    codes = [child.returncode for child in children]
    return 0 if all(c in (0, -signal.SIGTERM, None) for c in codes) else 1


COMMANDS = (migrate, ingest, fortnox_stream, dev)
