"""Revoking an account's credentials at its provider when the account is removed, so a removed
account leaves no live grant behind. A provider that is down never blocks the removal: the
revocation is tried again in the background (`credentials.revoke`, queued once the removal
commits), with the credentials sealed, and each outcome is written to the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.orm import Session

from connectors import ProviderError
from models import Account, AuditCause, after_commit
from worker.logconfig import secrets_known
from worker.service import audit, sealed
from worker.service.deps import Deps
from worker.service.outcomes import Rejected
from worker.vault import VaultError

log = structlog.get_logger(__name__)

ACTION = "credentials.revoked"
# What a retry order carries besides the sealed credentials; nothing in it is secret.
ORDER_FIELDS = ("type", "connection", "org_id", "account_id", "actor", "job_id", "request_id")

# Queues a retry order; installed where a Celery worker runs (worker/tasks/revoke.py). Without
# one (the tests, a job run in-process) a temporary failure is logged and reported, not retried.
Send = Callable[[dict[str, Any]], None]
_senders: list[Send] = []


def send_retries_with(send: Send | None) -> None:
    _senders.clear()
    if send is not None:
        _senders.append(send)


def revoke(session: Session, deps: Deps, account: Account, actor: dict[str, Any] | None) -> Any:
    """Revoke at the provider: True when done (or the grant was already gone), False when it
    failed, None when the provider offers no revocation for this kind of account (a key its
    owner made is theirs to roll). A temporary failure queues a retry after commit.

    Called under the account's row lock, before its deletion commits: a link cannot commit
    meanwhile, so the deletion that follows does not fail on a reference.
    """
    try:
        credentials = deps.vault.decrypt(account.credentials)
    except VaultError:
        log.warning("revoke_skipped_unreadable", account_id=str(account.id))
        credentials = None
    outcome: bool | None = False
    temporary = False
    if credentials is not None:
        outcome, temporary = attempt(deps, account.type, credentials, account.connection)
    queued = False
    if temporary and credentials is not None and _senders:
        order = {
            "type": account.type,
            "connection": account.connection,
            "org_id": account.org_id,
            "account_id": str(account.id),
            "actor": actor,
            **_job_ids(),
            "credentials_sealed": sealed.seal(deps.vault, credentials),
        }
        send = _senders[0]
        after_commit(session, lambda: send(order))
        queued = True
    if outcome is False:
        log.warning("revoke_failed", account_id=str(account.id), org_id=account.org_id)
    audit.record(
        session,
        ACTION,
        org_id=account.org_id,
        account_id=account.id,
        actor=actor,
        cause=AuditCause.JOB,
        outcome=outcome,
        details={"type": account.type, "retrying": queued},
    )
    return outcome


def attempt(
    deps: Deps, type_: str, credentials: dict[str, Any], connection: dict[str, Any]
) -> tuple[bool | None, bool]:
    """One try: (True/None as `revoke` says, False on failure) and whether it failed for now."""
    connector = deps.connectors.get(type_)
    try:
        with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
            done = deps.connectors.run(connector.revoke(credentials, connection))
    except ProviderError as exc:
        log.warning("revoke_attempt_failed", code=exc.code.value, temporary=exc.temporary)
        return False, exc.temporary
    return (True if done else None), False


def retry(deps: Deps, order: dict[str, Any], *, last: bool) -> bool | None:
    """The background retry of one revocation (`credentials.revoke`). Raises the provider's
    temporary failure while more tries remain; otherwise writes the final outcome to the audit
    trail and returns it."""
    fields = {name: order.get(name) for name in ORDER_FIELDS}
    if fields["type"] not in deps.connectors.by_type or not _is_uuid(fields["account_id"]):
        log.warning("revoke_retry_malformed", fields=sorted(k for k, v in fields.items() if v))
        return False
    try:
        credentials = sealed.unseal(deps.vault, order.get("credentials_sealed"))
    except Rejected:
        log.warning("revoke_retry_unreadable", account_id=fields["account_id"])
        outcome: bool | None = False
    else:
        connection = fields["connection"] if isinstance(fields["connection"], dict) else {}
        with secrets_known([v for v in credentials.values() if isinstance(v, str)]):
            try:
                done = deps.connectors.run(
                    deps.connectors.get(fields["type"]).revoke(credentials, connection)
                )
                outcome = True if done else None
            except ProviderError as exc:
                if exc.temporary and not last:
                    raise
                outcome = False
    log.info("revoke_retried", account_id=fields["account_id"], revoked=outcome)
    with deps.db.unit_of_work() as session:
        audit.record(
            session,
            ACTION,
            org_id=_text(fields["org_id"]),
            account_id=fields["account_id"],
            actor=fields["actor"] if isinstance(fields["actor"], dict) else None,
            cause=AuditCause.JOB,
            job_id=_text(fields["job_id"]),
            request_id=_text(fields["request_id"]),
            outcome=outcome,
            details={"type": fields["type"], "retried": True},
        )
    return outcome


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _job_ids() -> dict[str, str | None]:
    running = audit.current_job()
    if running is None:
        return {"job_id": None, "request_id": None}
    return {"job_id": running.job_id, "request_id": running.request_id}
