"""Which Fortnox companies the stream carries: every Fortnox account's current access token, read
from the database, and the book of what Fortnox has from us, so a re-read sends only changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select

from connectors import ErrorCode, ProviderError
from connectors.fortnox.stream import Tenants
from models import Account, AccountStatus
from worker.service.checks import usable_credentials
from worker.service.deps import Deps
from worker.vault import VaultError

log = structlog.get_logger(__name__)

TYPE = "fortnox"
UNREADABLE = ErrorCode.CREDENTIALS_UNREADABLE


@dataclass(frozen=True)
class Tenant:
    account_id: uuid.UUID
    access_token: str


def load_tenants(deps: Deps) -> list[Tenant]:
    """Every Fortnox account's current access token, read fresh (refreshed first when it is
    about to expire, under the same lock as the checks' refresh)."""
    with deps.db.unit_of_work() as session:
        accounts = list(
            session.scalars(
                select(Account)
                .where(Account.type == TYPE, Account.status != AccountStatus.DISCONNECTED)
                .order_by(Account.created_at)
            )
        )
    connector = deps.connectors.by_type.get(TYPE)
    tenants = []
    for account in accounts:
        try:
            if connector is not None:
                credentials = usable_credentials(deps, account, connector)
            else:
                credentials = deps.vault.decrypt(account.credentials)
        except ProviderError as exc:
            log.warning("fortnox_tenant_skipped", account_id=str(account.id), code=exc.code.value)
            continue
        except VaultError:
            # An operator's error (a key dropped too early), which the account's next check
            # records as `credentials_unreadable`: the stream carries the other companies.
            log.warning("fortnox_tenant_skipped", account_id=str(account.id), code=UNREADABLE.value)
            continue
        token = credentials.get("access_token")
        if isinstance(token, str) and token:
            tenants.append(Tenant(account.id, token))
    return tenants


@dataclass
class TenantBook:
    """What the current connection told Fortnox: each account's token, and the tenant id
    Fortnox answered for it. A new connection starts an empty book."""

    sent: dict[uuid.UUID, str] = field(default_factory=dict)  # account -> token Fortnox has
    tenant_ids: dict[uuid.UUID, str] = field(default_factory=dict)
    awaiting: list[Tenant] = field(default_factory=list)  # sent, answer not yet read

    def clear(self) -> None:
        self.sent.clear()
        self.tenant_ids.clear()
        self.awaiting = []

    def changes(self, tenants: list[Tenant]) -> tuple[list[Tenant], list[str]]:
        """The tenants whose token Fortnox lacks, and the tenant ids of accounts that are gone
        (forgotten here as they are returned)."""
        changed = [t for t in tenants if self.sent.get(t.account_id) != t.access_token]
        gone = set(self.sent) - {t.account_id for t in tenants}
        removed = [self.tenant_ids[a] for a in gone if a in self.tenant_ids]
        for account_id in gone:
            self.sent.pop(account_id, None)
            self.tenant_ids.pop(account_id, None)
        return changed, removed

    def answered(self, tenants: list[Tenant], result: Tenants[uuid.UUID]) -> None:
        # A refused token is not sent again; the account's next token will be.
        for tenant in tenants:
            self.sent[tenant.account_id] = tenant.access_token
        self.tenant_ids.update(result.tenant_ids)
