"""The CLI's error rule: whatever goes wrong, one line `error: ...` on stderr (under `--json`, one
JSON object `{"error": {"reason" | "code", "message"}}` on stdout) and a non-zero exit; never a
traceback. Configuration mistakes exit 2, as usage errors do; everything else 1."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from worker.cli.base import Failure

# Standard logging, not structlog: unconfigured (settings that fail to load) it stays silent below
# WARNING, where structlog's defaults would print the traceback this module exists to withhold.
log = logging.getLogger(__name__)

CONFIGURATION = 2
INTERRUPTED = 130


class OperatorGroup(click.Group):
    """A group whose invocation is wrapped: the commands raise, this says it in one line.
    `processes`: the commands that run a process; under `CONNECTIONS_LOG_FORMAT=json` their one
    line is JSON too, like every other line they write."""

    def __init__(self, *args: Any, processes: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processes = frozenset(processes)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit as exc:
            if isinstance(exc.code, str):  # a module refusing to start: `SystemExit("why")`
                report(Failure("configuration", exc.code, CONFIGURATION), self.wants_json(argv))
            raise
        except BaseException as exc:
            report(exc, self.wants_json(argv))
        sys.exit(code if isinstance(code, int) else 0)

    def wants_json(self, argv: list[str]) -> bool:
        if "--json" in argv:
            return True
        command = next((a for a in argv if not a.startswith("-")), None)
        return command in self.processes and os.environ.get("CONNECTIONS_LOG_FORMAT") == "json"


def report(exc: BaseException, as_json: bool) -> NoReturn:
    error, status = describe(exc)
    error["message"] = " ".join(str(error["message"]).split())  # one line, whatever it quotes
    if as_json:
        click.echo(json.dumps({"error": error}, default=str))
    else:
        click.echo(f"error: {error['message']}", err=True)
    sys.exit(status)


def describe(exc: BaseException) -> tuple[dict[str, Any], int]:
    """The error object and exit status for `exc`; what it says never includes a setting's value
    (a database error's first line names the host, never the password)."""
    from sqlalchemy.exc import DBAPIError

    from worker.runtime import ConfigurationError
    from worker.service.outcomes import Rejected
    from worker.vault import VaultError

    if isinstance(exc, Failure):
        return {exc.key: exc.code, "message": exc.message}, exc.exit_code
    if isinstance(exc, Rejected):
        fields = exc.extra.get("fields")
        said = exc.message
        if isinstance(fields, dict) and fields:
            said += " (" + "; ".join(f"{k}: {v}" for k, v in fields.items()) + ")"
        return {"reason": exc.reason.value, "message": said, **exc.extra}, 1
    if isinstance(exc, ConfigurationError):
        return {"code": "configuration", "message": str(exc)}, CONFIGURATION
    if isinstance(exc, click.ClickException):
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        return {"code": "usage", "message": exc.format_message() + hint}, exc.exit_code
    if isinstance(exc, click.Abort | KeyboardInterrupt):
        return {"code": "interrupted", "message": "interrupted"}, INTERRUPTED
    if isinstance(exc, DBAPIError):
        return database_error(exc), 1
    if isinstance(exc, VaultError):
        return {"code": "credentials_unreadable", "message": str(exc)}, 1
    if is_connection_error(exc):
        return {
            "code": "broker_unreachable",
            "message": "cannot reach the broker or the result backend (CONNECTIONS_BROKER_URL, "
            f"CONNECTIONS_RESULT_BACKEND): {first_line(exc)}",
        }, 1
    log.debug("cli_crashed", exc_info=exc)  # only with CONNECTIONS_LOG_LEVEL=DEBUG
    return {
        "code": "internal",
        "message": f"internal error ({type(exc).__name__}); "
        "CONNECTIONS_LOG_LEVEL=DEBUG shows the traceback",
    }, 1


def database_error(exc: Any) -> dict[str, Any]:
    from sqlalchemy.exc import InterfaceError, OperationalError

    said = first_line(exc.orig if exc.orig is not None else exc)
    if getattr(exc.orig, "sqlstate", None) == "42P01" or "no such table" in said:
        return {
            "code": "database_not_migrated",
            "message": "the database has no tables yet: run `connections migrate`",
        }
    if isinstance(exc, OperationalError | InterfaceError):
        return {"code": "database_unavailable", "message": f"the database failed: {said}"}
    # Other database errors quote the statement; its first line is the cause alone.
    return {"code": "database_error", "message": f"the database refused: {said}"}


def is_connection_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError as KombuOperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(
        exc, KombuOperationalError | RedisConnectionError | RedisTimeoutError | ConnectionError
    )


def first_line(exc: BaseException) -> str:
    said = str(exc).strip()
    return said.splitlines()[0] if said else type(exc).__name__
