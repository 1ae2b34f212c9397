"""What the operator commands share: the process's dependencies, one unit of work per command,
and the answer printed as JSON or text (errors on stderr, exit status 1)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from worker.settings import get_settings

if TYPE_CHECKING:  # the commands import what they use when they run: `--help` stays quick
    from sqlalchemy.orm import Session

    from worker.service.deps import Deps

T = TypeVar("T")


def emit(value: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(value, indent=2, default=str) if as_json else render(value))


def fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def open_deps() -> Deps:
    """The worker's own dependencies, with its logging: the operator runs on its machine."""
    from worker.logconfig import configure_logging
    from worker.runtime import get_deps

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    return get_deps()


def in_session(work: Callable[[Session], T]) -> T:
    """Run `work` in one unit of work; a refusal is the command's error."""
    from worker.service.outcomes import Rejected

    deps = open_deps()
    try:
        with deps.db.unit_of_work() as session:
            return work(session)
    except Rejected as exc:
        fail(exc.message)
