"""What service functions need from the process: the database, the vault, the connectors."""

from __future__ import annotations

from dataclasses import dataclass

from connectors import Connectors
from models import Database
from worker.vault import Vault


@dataclass
class Deps:
    db: Database
    vault: Vault
    connectors: Connectors
