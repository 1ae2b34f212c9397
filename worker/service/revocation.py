"""Revoking an account's credentials at its provider when the account is removed, so a removed
account leaves no live grant behind. A provider that is down never blocks the removal."""

from __future__ import annotations

import structlog

from connectors import ProviderError
from models import Account
from worker.logconfig import secrets_known
from worker.service.deps import Deps
from worker.vault import VaultError

log = structlog.get_logger(__name__)


def revoke(deps: Deps, account: Account) -> bool | None:
    """Revoke at the provider: True when done (or the grant was already gone), False when it
    failed, None when the provider offers no revocation for this kind of account (a key its
    owner made is theirs to roll).

    Called under the account's row lock, before its deletion commits: a link cannot commit
    meanwhile, so the deletion that follows does not fail on a reference.
    """
    connector = deps.connectors.get(account.type)
    try:
        credentials = deps.vault.decrypt(account.credentials)
    except VaultError:
        log.warning("revoke_skipped_unreadable", account_id=str(account.id))
        return False
    try:
        with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
            done = deps.connectors.run(connector.revoke(credentials, account.connection))
    except ProviderError as exc:
        log.warning(
            "revoke_failed",
            account_id=str(account.id),
            org_id=account.org_id,
            code=exc.code.value,
            temporary=exc.temporary,
        )
        return False
    return True if done else None
