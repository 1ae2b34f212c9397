"""`connections`: run the processes, migrate, and look at accounts, jobs, webhooks, incidents and
the status of the whole.

One module per command group; the text each command prints is in `render`; whatever fails is
said in one line by `errors` (the group's invocation is wrapped), never as a traceback.
"""

from __future__ import annotations

import click

from worker.cli import accounts, audit, incidents, jobs, processes, status, webhooks
from worker.cli.errors import OperatorGroup


@click.group(cls=OperatorGroup, processes=[c.name for c in processes.COMMANDS if c.name])
@click.version_option(
    package_name="standout-connections", prog_name="connections", help="Show the version."
)
def main() -> None:
    """The connections worker: its processes, and an operator's look at accounts, jobs, webhooks,
    incidents and the status of the whole. Every command takes --help."""


for command in (
    *processes.COMMANDS,
    status.status,
    accounts.accounts,
    jobs.jobs,
    webhooks.webhooks,
    incidents.incidents,
    audit.audit,
):
    main.add_command(command)

__all__ = ["main"]
