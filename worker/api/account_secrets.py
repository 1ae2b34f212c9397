"""Per-account webhook secrets for the per-account webhook routes (Stripe's
`/webhooks/stripe/{account_id}`), decrypted once and kept briefly."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from models import Account
from worker.service.deps import Deps


@dataclass
class Secret:
    found: bool
    secret: str | None
    expires: float
    loaded: float


class AccountSecrets:
    """The `field` credential of accounts of one type; a signature that fails against a cached
    secret is checked again against the stored one (it may have changed)."""

    def __init__(
        self, deps: Deps, account_type: str, field: str, ttl: float = 30.0, miss_ttl: float = 5.0
    ) -> None:
        self.deps = deps
        self.account_type = account_type
        self.field = field
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self._cache: dict[uuid.UUID, Secret] = {}
        self._lock = threading.Lock()

    def cached(self, account_id: uuid.UUID) -> Secret | None:
        with self._lock:
            entry = self._cache.get(account_id)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    def load(self, account_id: uuid.UUID) -> Secret:
        with self.deps.db.unit_of_work() as session:
            account = session.scalars(
                select(Account).where(Account.id == account_id, Account.type == self.account_type)
            ).first()
            now = time.monotonic()
            if account is None:
                entry = Secret(False, None, now + self.miss_ttl, now)
            else:
                secret = self.deps.vault.decrypt(account.credentials).get(self.field)
                entry = Secret(True, secret or None, now + self.ttl, now)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[account_id] = entry
        return entry
