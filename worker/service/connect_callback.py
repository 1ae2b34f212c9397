"""A provider sending the browser back to `GET /connect/{type}/callback`: verify, use the session
once, and order the add (or, for a reconnect, update) job that exchanges the code.

Nothing is changed until the state is verified (and, for Shopify, the callback's own signature):
a refused callback leaves its session as it was. Then one `UPDATE ... WHERE used_at IS NULL`
uses the session, so of two loads of the same callback only one goes on. The job's `request_id`
is the session id, so even a job sent twice has one effect. The code travels to the worker sealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from connectors.base import ProviderError
from connectors.registry import PROVIDERS
from connectors.shopify import ShopifySettings, verify_callback
from models import ConnectSession, ConnectStatus
from worker.service import connect_state, sealed
from worker.service.connect import ConnectConfig, claims_of, oauth_connector
from worker.service.connect_state import StateRefused
from worker.service.deps import Deps
from worker.service.outcomes import Reason

DESCRIPTION_MAX = 300


@dataclass(frozen=True)
class JobOrder:
    """The job the callback asks the worker to run; `job_id` is its Celery task id."""

    job_id: str
    name: str
    kwargs: dict[str, Any] = field(repr=False)  # holds the sealed code: never printed


@dataclass(frozen=True)
class Begun:
    """What the callback did: `job` to send, or none when the session ended already."""

    session_id: uuid.UUID
    job: JobOrder | None


def begin(
    session: Session,
    deps: Deps,
    config: ConnectConfig,
    *,
    type_: str,
    query: dict[str, str],
    now: datetime,
) -> Begun:
    """Verify the callback and use its session; StateRefused (nothing changed) when it cannot
    be used. A provider's `error` ends the session `rejected`; a code becomes a job order."""
    if config.key is None:
        raise connect_state.refused(connect_state.FORGED)
    state = query.get("state")
    session_id, _ = connect_state.session_of(state)
    row = session.get(ConnectSession, session_id)
    if row is None:
        raise connect_state.refused(connect_state.FORGED)
    connect_state.verify(
        config.key,
        state,
        claims_of(row),
        now,
        called_type=type_,
        used=row.used_at is not None,
    )
    check = CALLBACK_CHECKS.get(type_)
    if check is not None:
        check(deps, row, query, now)
    error = query.get("error")
    if error is not None:
        _use(session, row, now, None)
        row.status = ConnectStatus.REJECTED
        row.reason = Reason.AUTHORIZATION_FAILED.value
        row.message = refusal_message(type_, error, query.get("error_description"))
        return Begun(row.id, None)
    code = query.get("code")
    if not code:
        raise StateRefused("no_code", "The provider sent no authorization code. Start again.")
    # The fields each provider's credentials model takes from a callback.
    fields = oauth_connector(deps, type_).credentials_model.model_fields
    credentials: dict[str, Any] = {"code": code}
    if "redirect_uri" in fields:
        credentials["redirect_uri"] = config.redirect_uri(type_)
    if "shop_domain" in fields:
        credentials["shop_domain"] = row.shop_domain
    job_id = str(uuid.uuid4())
    _use(session, row, now, job_id)
    return Begun(row.id, JobOrder(job_id, *job_for(row, sealed.seal(deps.vault, credentials))))


def job_for(row: ConnectSession, credentials_sealed: str) -> tuple[str, dict[str, Any]]:
    """`accounts.add`, or `accounts.update` of the account a reconnect names, as the session's
    actor, with the session id as `request_id`."""
    common = {
        "org_id": row.org_id,
        "actor": row.actor,
        "credentials_sealed": credentials_sealed,
        "request_id": str(row.id),
    }
    if row.account_id is not None:
        named = {"name": row.name} if row.name is not None else {}
        return "accounts.update", {**common, "account_id": str(row.account_id), **named}
    return "accounts.add", {**common, "type": row.type, "name": row.name}


def not_queued(session: Session, session_id: uuid.UUID) -> None:
    """The job could not be handed to the broker: the session ends `failed` (it is used)."""
    row = session.get(ConnectSession, session_id)
    if row is not None and row.status == ConnectStatus.PENDING:
        row.status = ConnectStatus.FAILED
        row.message = (
            "the connection could not be queued (the job queue is unreachable); start again"
        )


def refusal_message(type_: str, error: str, description: str | None) -> str:
    """The provider's refusal in words, its description kept short and printable."""
    title = PROVIDERS[type_].title if type_ in PROVIDERS else type_
    said = description if description else error
    said = "".join(c for c in said if c.isprintable())[:DESCRIPTION_MAX]
    return f"{title} did not authorize the connection: {said}"


def _use(session: Session, row: ConnectSession, now: datetime, job_id: str | None) -> None:
    """Stamp the session used, if no one has: the one statement that decides which of two
    concurrent loads goes on."""
    used = session.execute(
        update(ConnectSession)
        .where(
            ConnectSession.id == row.id,
            ConnectSession.used_at.is_(None),
            ConnectSession.expires_at > now,
        )
        .values(used_at=now, job_id=job_id)
        .execution_options(synchronize_session=False)
    )
    if getattr(used, "rowcount", 0) != 1:
        raise connect_state.refused(connect_state.REUSED)
    session.refresh(row)


def _shopify(deps: Deps, row: ConnectSession, query: dict[str, str], now: datetime) -> None:
    """Shopify signs its callback: the HMAC over the query with the app's secret (the current or
    the previous one), a fresh timestamp, and the shop the session was for."""
    settings = deps.connectors.settings["shopify"]
    assert isinstance(settings, ShopifySettings)
    try:
        verify_callback(query, settings.app_secrets(), now, settings.callback_max_age_seconds)
    except ProviderError as exc:
        raise StateRefused("unsigned", exc.message[:1].upper() + exc.message[1:] + ".") from None
    if query.get("shop", "").lower() != row.shop_domain:
        raise StateRefused("other_shop", "This callback is for another shop. Start again.")


CALLBACK_CHECKS: dict[str, Callable[[Deps, ConnectSession, dict[str, str], datetime], None]] = {
    "shopify": _shopify,
}
