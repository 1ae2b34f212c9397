"""`connections`: run the processes, migrate, and look at accounts, jobs, webhooks and incidents.

One module per command group; the text each command prints is in `render`.
"""

from __future__ import annotations

import click

from worker.cli import accounts, incidents, jobs, processes, webhooks


@click.group()
def main() -> None:
    """The connections worker."""


for command in (
    *processes.COMMANDS,
    accounts.accounts,
    jobs.jobs,
    webhooks.webhooks,
    incidents.incidents,
):
    main.add_command(command)

__all__ = ["main"]
