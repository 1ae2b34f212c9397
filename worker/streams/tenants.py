"""Which tenants a provider's event stream carries (Fortnox's companies): every account of the
provider with its current access token, read from the database, and the book of what the provider
has from us, so a re-read sends only changes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import select

from connectors import ErrorCode, ProviderError
from models import Account, AccountStatus
from worker.service.checks import usable_credentials
from worker.service.deps import Deps
from worker.vault import VaultError

log = structlog.get_logger(__name__)

UNREADABLE = ErrorCode.CREDENTIALS_UNREADABLE


@dataclass(frozen=True)
class Tenant:
    account_id: uuid.UUID
    access_token: str


def load_tenants(deps: Deps, provider: str) -> list[Tenant]:
    """Every account's current access token, read fresh (refreshed first when it is
    about to expire, under the same lock as the checks' refresh)."""
    with deps.db.unit_of_work() as session:
        accounts = list(
            session.scalars(
                select(Account)
                .where(Account.type == provider, Account.status != AccountStatus.DISCONNECTED)
                .order_by(Account.created_at)
            )
        )
    connector = deps.connectors.by_type.get(provider)
    tenants = []
    for account in accounts:
        try:
            if connector is not None:
                credentials = usable_credentials(deps, account, connector)
            else:
                credentials = deps.vault.decrypt(account.credentials)
        except ProviderError as exc:
            log.warning(
                "stream_tenant_skipped",
                provider=provider,
                account_id=str(account.id),
                code=exc.code.value,
            )
            continue
        except VaultError:
            # An operator's error (a key dropped too early), which the account's next check
            # records as `credentials_unreadable`: the stream carries the other companies.
            log.warning(
                "stream_tenant_skipped",
                provider=provider,
                account_id=str(account.id),
                code=UNREADABLE.value,
            )
            continue
        token = credentials.get("access_token")
        if isinstance(token, str) and token:
            tenants.append(Tenant(account.id, token))
    return tenants


class Answered(Protocol):
    """What the provider's answer said of the tokens sent, by account."""

    @property
    def tenant_ids(self) -> Mapping[uuid.UUID, str]: ...  # account -> its tenant id

    @property
    def refused(self) -> Sequence[uuid.UUID]: ...


@dataclass
class TenantBook:
    """What the current connection told the provider: each account's token, and the tenant
    id it answered for it. A new connection starts an empty book."""

    sent: dict[uuid.UUID, str] = field(default_factory=dict)  # account -> the token it has
    tenant_ids: dict[uuid.UUID, str] = field(default_factory=dict)
    awaiting: list[Tenant] = field(default_factory=list)  # sent, answer not yet read

    def clear(self) -> None:
        self.sent.clear()
        self.tenant_ids.clear()
        self.awaiting = []

    def changes(self, tenants: list[Tenant]) -> tuple[list[Tenant], list[str]]:
        """The tenants whose token the provider lacks, and the tenant ids of accounts that are gone
        (forgotten here as they are returned)."""
        changed = [t for t in tenants if self.sent.get(t.account_id) != t.access_token]
        gone = set(self.sent) - {t.account_id for t in tenants}
        removed = [self.tenant_ids[a] for a in gone if a in self.tenant_ids]
        for account_id in gone:
            self.sent.pop(account_id, None)
            self.tenant_ids.pop(account_id, None)
        return changed, removed

    def answered(self, tenants: list[Tenant], result: Answered) -> None:
        # A refused token is not sent again; the account's next token will be.
        for tenant in tenants:
            self.sent[tenant.account_id] = tenant.access_token
        self.tenant_ids.update(result.tenant_ids)
