"""Adding, editing, removing and reading accounts, under the role rules. No Celery here."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors import Connector
from models import Account, AccountStatus, IntegrationRef, utc_now
from worker.logconfig import secrets_known
from worker.service import audit, inputs, notify, revocation
from worker.service import credentials as steps
from worker.service.deps import Deps
from worker.service.outcomes import (
    Action,
    Outcome,
    Reason,
    Rejected,
    parse_actor,
    require,
)
from worker.service.records import emit, resolve_errors, set_status
from worker.service.views import summary

log = structlog.get_logger(__name__)


def load_account(
    session: Session, org_id: str, account_id: uuid.UUID, *, lock: bool = False
) -> Account:
    """The account, if it belongs to `org_id`; another organization's is `not_found`."""
    query = select(Account).where(Account.id == account_id, Account.org_id == org_id)
    if lock:
        query = query.with_for_update()
    account = session.scalars(query).first()
    if account is None:
        raise Rejected(Reason.NOT_FOUND, "no such account in this organization")
    return account


def connector_for(deps: Deps, type_: Any) -> Connector:
    if not isinstance(type_, str) or type_ not in deps.connectors.by_type:
        known = ", ".join(sorted(deps.connectors.by_type))
        raise inputs.invalid({"type": f"must be one of: {known}"})
    return deps.connectors.get(type_)


def secret_values(raw: Any) -> list[str]:
    if not isinstance(raw, dict):
        return []
    return [v for v in raw.values() if isinstance(v, str)]


def add(
    session: Session,
    deps: Deps,
    *,
    org_id: Any,
    actor: Any,
    type: Any,
    name: Any,
    credentials: Any = None,
    settings: Any = None,
    credentials_sealed: Any = None,
) -> Outcome:
    """Validate, authorize, confirm; only then the account exists, `connected`. The credentials
    come as `credentials`, or sealed as `credentials_sealed` (opened here, never logged)."""
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.CHANGE)
    try:
        raw = steps.given(deps, credentials, credentials_sealed)
    except Rejected as exc:
        exc.extra.setdefault("step", "validate")
        raise
    with secrets_known(secret_values(raw)):
        try:
            connector = connector_for(deps, type)
            clean_name = inputs.name(name)
            clean_settings = inputs.settings(settings)
            fields = inputs.credentials(connector.credentials_model, raw)
        except Rejected as exc:
            exc.extra.setdefault("step", "validate")
            raise

        authorized = steps.authorize(deps, connector, fields)
        check = steps.confirm(deps, connector, authorized)

        now = utc_now()
        account = Account(
            id=uuid.uuid4(),
            org_id=org,
            name=clean_name,
            type=connector.type,
            status=AccountStatus.PENDING,
            connection=authorized.connection,
            meta=check.metadata,
            settings=clean_settings,
            credentials=deps.vault.encrypt(authorized.credentials),
            credentials_expire_at=authorized.expires_at,
            created_at=now,
            updated_at=now,
            last_checked_at=now,
        )
        session.add(account)
        emit(session, "account.added", org, account, {"account": summary(account)})
        set_status(
            session,
            account,
            AccountStatus.CONNECTED,
            "confirmed by the first check",
            "job",
            who.as_dict(),
        )
        session.flush()
        audit.account_change(session, "account.added", account, who.as_dict(), {"name": clean_name})
        notify.credentials_changed(session, account.type, account.id)
        log.info("account_added", org_id=org, account_id=str(account.id), type=account.type)
        return Outcome("account added and connected", summary(account))


def update(
    session: Session,
    deps: Deps,
    *,
    org_id: Any,
    actor: Any,
    account_id: Any,
    name: Any = None,
    settings: Any = None,
    credentials: Any = None,
    credentials_sealed: Any = None,
) -> Outcome:
    """Rename, change settings, or replace credentials (plain or sealed) once the new ones are
    confirmed and name the same upstream account (a reconnect)."""
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.CHANGE)
    raw = steps.given(deps, credentials, credentials_sealed)
    with secrets_known(secret_values(raw)):
        target = inputs.account_id(account_id)
        new_name = inputs.name(name) if name is not None else None
        new_settings = inputs.settings(settings) if settings is not None else None
        if new_name is None and new_settings is None and raw is None:
            raise inputs.invalid(
                {"name": "give at least one of name, settings or credentials"},
                "nothing to change",
            )
        account = load_account(session, org, target, lock=True)
        connector = deps.connectors.get(account.type)
        fields = inputs.credentials(connector.credentials_model, raw) if raw is not None else None
        changed: list[str] = []
        if new_name is not None and new_name != account.name:
            account.name = new_name
            changed.append("name")
        if new_settings is not None and new_settings != account.settings:
            account.settings = new_settings
            changed.append("settings")
        if fields is not None:
            authorized = steps.authorize(deps, connector, fields)
            check = steps.confirm(deps, connector, authorized)
            steps.pin_identity(connector, account, authorized, check)
            account.credentials = deps.vault.encrypt(authorized.credentials)
            account.credentials_version += 1
            account.credentials_expire_at = authorized.expires_at
            account.connection = authorized.connection
            account.meta = check.metadata
            account.last_checked_at = utc_now()
            account.consecutive_failures = 0
            resolve_errors(session, account)
            set_status(
                session,
                account,
                AccountStatus.CONNECTED,
                "new credentials confirmed",
                "job",
                who.as_dict(),
            )
            changed.append("credentials")
            notify.credentials_changed(session, account.type, account.id)
        if changed:
            account.updated_at = utc_now()
            action = "account.reconnected" if "credentials" in changed else "account.updated"
            audit.account_change(session, action, account, who.as_dict(), {"changed": changed})
        session.flush()
        message = f"updated {', '.join(changed)}" if changed else "nothing changed"
        return Outcome(message, summary(account), {"changed": changed})


def remove(session: Session, deps: Deps, *, org_id: Any, actor: Any, account_id: Any) -> Outcome:
    """Delete the account unless an integration references it. The foreign key (RESTRICT) is the
    final word: a link that commits while we delete makes the delete fail, never vanish."""
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.CHANGE)
    target = inputs.account_id(account_id)
    account = load_account(session, org, target, lock=True)
    if account.integrations:
        raise _in_use(account.integrations)
    snapshot = summary(account)
    revoked = revocation.revoke(session, deps, account, who.as_dict())
    try:
        with session.begin_nested():
            emit(
                session,
                "account.removed",
                org,
                account,
                {"account": snapshot, "actor": who.as_dict()},
            )
            audit.account_change(session, "account.removed", account, who.as_dict())
            session.delete(account)
    except IntegrityError:
        refs = session.scalars(select(IntegrationRef).where(IntegrationRef.account_id == target))
        raise _in_use(list(refs)) from None
    notify.credentials_changed(session, account.type, target)
    log.info("account_removed", org_id=org, account_id=str(target), revoked=revoked)
    message = "account removed" + REVOKE_WORDS[revoked]
    return Outcome(message, {**snapshot, "status": "removed"}, {"revoked": revoked})


REVOKE_WORDS = {
    True: "; its access was revoked at the provider",
    False: "; revoking its access at the provider failed, revoke it there by hand",
    None: "",
}


def list_accounts(session: Session, *, org_id: Any, actor: Any) -> list[dict[str, Any]]:
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.LIST)
    accounts = session.scalars(
        select(Account).where(Account.org_id == org).order_by(Account.created_at, Account.id)
    )
    return [summary(a) for a in accounts]


def _in_use(refs: list[Any]) -> Rejected:
    integrations = [{"id": r.integration_id, "name": r.name} for r in refs]
    names = ", ".join(i["name"] for i in integrations) or "an integration"
    return Rejected(
        Reason.IN_USE,
        f"the account is used by {names}; unlink it there first",
        integrations=integrations,
    )
