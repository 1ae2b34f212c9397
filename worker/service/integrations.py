"""Integrations (workflows) starting and stopping to use an account."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models import IntegrationRef
from worker.service import audit, inputs
from worker.service.accounts import load_account
from worker.service.outcomes import Outcome, Reason, Rejected
from worker.service.views import summary


def link(
    session: Session, *, org_id: Any, integration_id: Any, account_id: Any, name: Any
) -> Outcome:
    """Reference the account; the foreign key refuses it if a remove got there first."""
    org = inputs.org_id(org_id)
    integration = inputs.external_id(integration_id, "integration_id")
    target = inputs.account_id(account_id)
    clean_name = inputs.name(name)
    # KEY SHARE lock: a concurrent remove waits for us, or we wait for it and see it gone.
    account = load_account(session, org, target)
    existing = session.get(IntegrationRef, (target, integration))
    if existing is not None:
        existing.name = clean_name
        return Outcome("already linked", summary(account), {"integration_id": integration})
    try:
        with session.begin_nested():
            session.add(
                IntegrationRef(
                    account_id=target, integration_id=integration, org_id=org, name=clean_name
                )
            )
    except IntegrityError:
        raise Rejected(Reason.NOT_FOUND, "no such account in this organization") from None
    audit.account_change(
        session, "integration.linked", account, None, {"integration_id": integration}
    )
    return Outcome("linked", summary(account), {"integration_id": integration})


def unlink(session: Session, *, org_id: Any, integration_id: Any, account_id: Any) -> Outcome:
    org = inputs.org_id(org_id)
    integration = inputs.external_id(integration_id, "integration_id")
    target = inputs.account_id(account_id)
    account = load_account(session, org, target)
    ref = session.scalars(
        select(IntegrationRef).where(
            IntegrationRef.account_id == target, IntegrationRef.integration_id == integration
        )
    ).first()
    if ref is None:
        return Outcome("was not linked", summary(account), {"integration_id": integration})
    session.delete(ref)
    session.flush()
    audit.account_change(
        session, "integration.unlinked", account, None, {"integration_id": integration}
    )
    return Outcome("unlinked", summary(account), {"integration_id": integration})
