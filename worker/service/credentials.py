"""The credential steps of adding and reconnecting an account: which credentials a job carries
(plain or sealed), authorizing them with the provider, confirming them with a first check, and
pinning a reconnect to the upstream account the account already is."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from connectors import Authorized, CheckResult, Connector, ProviderError
from models import Account
from worker.logconfig import secrets_known
from worker.service import inputs, sealed
from worker.service.deps import Deps
from worker.service.outcomes import Failed, Reason, Rejected

BOTH = "give credentials or credentials_sealed, not both"


def given(deps: Deps, credentials: Any, credentials_sealed: Any) -> Any:
    """The credentials a job carries: `credentials` as sent, or opened from
    `credentials_sealed`; None when it carries neither. Both at once is `invalid`."""
    if credentials is not None and credentials_sealed is not None:
        raise inputs.invalid(
            {"credentials": BOTH, sealed.FIELD: BOTH}, "give the credentials only once"
        )
    if credentials_sealed is not None:
        return sealed.unseal(deps.vault, credentials_sealed)
    return credentials


def authorize(deps: Deps, connector: Connector, fields: BaseModel) -> Authorized:
    """Exchange a code or check a key; a refusal is `authorization_failed` at step `authorize`."""
    try:
        return deps.connectors.run(connector.authorize(fields))
    except ProviderError as exc:
        kind = Failed if exc.temporary else Rejected
        raise kind(
            Reason.AUTHORIZATION_FAILED, exc.message, step="authorize", error_code=exc.code.value
        ) from None


def confirm(deps: Deps, connector: Connector, authorized: Authorized) -> CheckResult:
    """The first health check with the new credentials; a failure is `confirmation_failed`."""
    # The tokens a code exchange just returned are known to the log scrubber while in use.
    with secrets_known([v for v in authorized.credentials.values() if isinstance(v, str)]):
        try:
            return deps.connectors.run(
                connector.check(authorized.credentials, authorized.connection)
            )
        except ProviderError as exc:
            kind = Failed if exc.temporary else Rejected
            raise kind(
                Reason.CONFIRMATION_FAILED, exc.message, step="confirm", error_code=exc.code.value
            ) from None


def pin_identity(
    connector: Connector, account: Account, authorized: Authorized, check: CheckResult
) -> None:
    """New credentials must name the upstream account this account already is (the shop, Stripe
    account, Fortnox company or HubSpot portal); else `identity_mismatch`. An account with no
    known identity (added before identities were kept) takes whatever the new ones name."""
    current = connector.identity(account.connection, account.meta)
    if current is None:
        return
    new = connector.identity(authorized.connection, check.metadata)
    if new == current:
        return
    named = f"names {new}" if new else "does not say which account it is"
    raise Rejected(
        Reason.IDENTITY_MISMATCH,
        f"the authorization {named}, but this account is {current}; authorize {current} "
        "again, or add the other one as a new account",
        step="identity",
        identity={"expected": current, "given": new},
    )
