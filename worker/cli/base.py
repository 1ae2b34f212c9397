"""What the operator commands share: the settings and dependencies checked at start (closed when
the command ends), one unit of work per command, the `--json` option, and the answer printed as
JSON or text. A failure is an exception; `errors` turns it into the one line the operator sees."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

if TYPE_CHECKING:  # the commands import what they use when they run: `--help` stays quick
    from sqlalchemy.orm import Session

    from worker.service.deps import Deps
    from worker.settings import Settings

T = TypeVar("T")

JSON_HELP = "Print the answer as JSON, in the read API's shapes."
json_option = click.option("--json", "as_json", is_flag=True, help=JSON_HELP)


class Failure(Exception):
    """A command's refusal, said in one line: `code` names it under `--json`."""

    def __init__(self, code: str, message: str, exit_code: int = 1, key: str = "code") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code
        self.key = key  # "reason" for a job's or service's rejection, as the read API says


def fail(message: str, code: str = "failed") -> NoReturn:
    raise Failure(code, message)


def emit(value: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, indent=2, default=str) if as_json else render(value))


def load_settings() -> Settings:
    """The settings, checked, with the worker's logging: the operator runs on its machine."""
    from worker.logconfig import configure_logging
    from worker.runtime import load_settings as checked

    settings = checked()
    configure_logging(settings.log_format, settings.log_level)
    return settings


def open_deps() -> Deps:
    """The worker's dependencies, checked as a process checks them at start (keys, a database
    that answers), and closed when the command ends."""
    from contextlib import contextmanager

    from worker.runtime import close_deps, started_deps

    @contextmanager
    def opened() -> Any:
        deps = started_deps(load_settings())
        try:
            yield deps
        finally:
            close_deps(deps)

    result: Deps = click.get_current_context().with_resource(opened())
    return result


def in_session(work: Callable[[Session], T]) -> T:
    """Run `work` in one unit of work; a refusal (`Rejected`) is the command's error."""
    deps = open_deps()
    with deps.db.unit_of_work() as session:
        return work(session)
