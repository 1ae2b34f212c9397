"""Connect sessions: the front end asks for one, sends the browser to the provider's authorize
link it answers with, and reads how it ended. The callback's side is `connect_callback`.

A session is `pending` until its callback ends it `succeeded`, `rejected` or `failed` (the add or
update job's outcome, or the provider's refusal); unused past `expires_at`, it reads `expired`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.orm import Session

from connectors import Connector, ProviderError
from connectors.shopify.settings import shop_domain
from models import ConnectSession, ConnectStatus
from worker.service import inputs
from worker.service.accounts import connector_for, load_account
from worker.service.connect_state import Claims, sign, state_key
from worker.service.deps import Deps
from worker.service.jobs import stored_result
from worker.service.outcomes import Action, Reason, Rejected, parse_actor, require
from worker.service.views import iso
from worker.settings import Settings

BODY_FIELDS = ("type", "name", "account_id", "shop_domain", "return_url")
RETURN_URL_MAX = 2000
# After a prefix that does not end in "/", the return URL must go on with one of these, so the
# prefix `https://app.example.com` does not admit `https://app.example.com.evil.test/`.
PREFIX_BOUNDARY = ("/", "?", "#")


@dataclass(frozen=True)
class ConnectConfig:
    """What sessions need of the settings; `key` is None when no service token is set (then no
    session can be made, nor any state verified)."""

    key: bytes | None
    public_base_url: str | None
    return_urls: tuple[str, ...]
    ttl: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectConfig:
        token = settings.service_token.get_secret_value() if settings.service_token else None
        prefixes = (p.strip() for p in settings.connect_return_urls.split(","))
        return cls(
            key=state_key(token) if token else None,
            public_base_url=settings.public_base_url,
            return_urls=tuple(p for p in prefixes if p),
            ttl=timedelta(seconds=settings.connect_session_ttl_seconds),
        )

    def redirect_uri(self, type_: str) -> str:
        if not self.public_base_url:
            raise Rejected(
                Reason.INVALID,
                "connect sessions need CONNECTIONS_PUBLIC_BASE_URL, the address browsers reach "
                "this service at (the providers send them back to it)",
            )
        return f"{self.public_base_url.rstrip('/')}/connect/{type_}/callback"


def oauth_connector(deps: Deps, type_: Any) -> Connector:
    """The connector of a provider connected by OAuth (its credentials take a `code`)."""
    oauth = sorted(
        t for t, c in deps.connectors.by_type.items() if "code" in c.credentials_model.model_fields
    )
    if type_ not in oauth:
        connector_for(deps, type_)  # an unknown type is named as such
        raise inputs.invalid(
            {"type": f"connects by key, not through a session; sessions take: {', '.join(oauth)}"}
        )
    return deps.connectors.get(type_)


def claims_of(row: ConnectSession) -> Claims:
    return Claims(
        session_id=row.id,
        org_id=row.org_id,
        user_id=str(row.actor.get("user_id", "")),
        role=str(row.actor.get("role", "")),
        type=row.type,
        account_id=row.account_id,
        expires_at=row.expires_at,
    )


def create(
    session: Session,
    deps: Deps,
    config: ConnectConfig,
    *,
    org_id: Any,
    actor: Any,
    body: Any,
    now: datetime,
) -> dict[str, Any]:
    """A new pending session and its authorize link; bad input is refused and stores nothing."""
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.CHANGE)
    if not isinstance(body, dict):
        raise inputs.invalid({"_": "the body must be a JSON object"})
    unknown = sorted(k for k in body if k not in BODY_FIELDS)
    if unknown:
        raise inputs.invalid({str(k): "not a field of a connect session" for k in unknown})
    connector = oauth_connector(deps, body.get("type"))
    type_ = connector.type
    account_id = None
    shop = body.get("shop_domain")
    if body.get("account_id") is not None:
        account = load_account(session, org, inputs.account_id(body["account_id"]))
        if account.type != type_:
            raise Rejected(Reason.NOT_FOUND, f"no such {type_} account in this organization")
        account_id = account.id
        if shop is None:  # a reconnect goes back to the shop it is
            shop = account.connection.get("shop_domain")
    name = body.get("name")
    clean_name = inputs.name(name) if name is not None or account_id is None else None
    shop_domain = _shop_domain(connector, shop)
    return_url = allowed_return_url(config, body.get("return_url"))
    if config.key is None:
        raise Rejected(Reason.INVALID, "connect sessions need CONNECTIONS_SERVICE_TOKEN")
    redirect_uri = config.redirect_uri(type_)

    row = ConnectSession(
        id=uuid.uuid4(),
        org_id=org,
        actor=who.as_dict(),
        type=type_,
        name=clean_name,
        account_id=account_id,
        shop_domain=shop_domain,
        return_url=return_url,
        status=ConnectStatus.PENDING,
        # Whole seconds: the state carries the expiry in seconds, and both must agree.
        expires_at=(now + config.ttl).replace(microsecond=0),
        created_at=now,
    )
    state = sign(config.key, claims_of(row))
    try:
        url = connector.authorize_url(
            state=state, redirect_uri=redirect_uri, shop_domain=shop_domain
        )
    except ProviderError as exc:  # the provider's app is not configured here
        raise inputs.invalid({"type": exc.message}, exc.message) from None
    session.add(row)
    return {"id": str(row.id), "authorize_url": url, "expires_at": iso(row.expires_at)}


def read(
    session: Session, *, org_id: Any, actor: Any, session_id: Any, now: datetime
) -> dict[str, Any]:
    """The session as the front end sees it; another organization's is `not_found`."""
    who = parse_actor(actor)
    org = inputs.org_id(org_id)
    require(who, Action.LIST)
    row = load(session, org, session_id)
    settle(session, row)
    return view(row, now)


def outcome(
    session: Session, session_id: uuid.UUID, now: datetime
) -> tuple[dict[str, Any], str | None]:
    """After a callback: the session as it reads now, and where to send the browser back."""
    row = session.get(ConnectSession, session_id)
    assert row is not None, "the callback has just used it"
    settle(session, row)
    return view(row, now), row.return_url


def load(session: Session, org: str, session_id: Any) -> ConnectSession:
    try:
        wanted = uuid.UUID(str(session_id))
    except ValueError:
        wanted = None
    row = session.get(ConnectSession, wanted) if wanted is not None else None
    if row is None or row.org_id != org:
        raise Rejected(Reason.NOT_FOUND, "no such connect session in this organization")
    return row


def settle(session: Session, row: ConnectSession) -> None:
    """A pending session whose job has finished takes the job's outcome."""
    if row.status != ConnectStatus.PENDING or row.job_id is None:
        return
    result = stored_result(session, row.job_id)
    if result is not None:
        finish(row, result)


def finish(row: ConnectSession, result: dict[str, Any]) -> None:
    """Store a job's outcome (`succeeded`, `rejected` or `failed`) on its session."""
    status = result.get("status")
    ended = (ConnectStatus.SUCCEEDED, ConnectStatus.REJECTED, ConnectStatus.FAILED)
    row.status = status if isinstance(status, str) and status in ended else ConnectStatus.FAILED
    row.reason = result.get("reason")
    row.message = result.get("message")
    account = result.get("account")
    row.account = account if isinstance(account, dict) else None


def view(row: ConnectSession, now: datetime) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "type": row.type,
        "status": status_of(row, now),
        "reason": row.reason,
        "message": row.message,
        "job_id": row.job_id,
        "account": row.account,
    }


def status_of(row: ConnectSession, now: datetime) -> str:
    if row.status == ConnectStatus.PENDING and row.used_at is None and now >= row.expires_at:
        return ConnectStatus.EXPIRED
    return row.status


def allowed_return_url(config: ConnectConfig, value: Any) -> str | None:
    """`value` if it starts with one of CONNECT_RETURN_URLS (at a boundary), else `invalid`."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > RETURN_URL_MAX:
        raise inputs.invalid({"return_url": f"must be a URL of at most {RETURN_URL_MAX} chars"})
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        raise inputs.invalid({"return_url": "must not hold spaces or control characters"})
    try:
        httpx.URL(value)  # the callback adds `session` and `status` to it
    except httpx.InvalidURL:
        raise inputs.invalid({"return_url": "must be a valid URL"}) from None
    if not config.return_urls:
        raise inputs.invalid(
            {"return_url": "no return URL is allowed: CONNECTIONS_CONNECT_RETURN_URLS is unset"}
        )
    for prefix in config.return_urls:
        rest = value.removeprefix(prefix)
        if value.startswith(prefix) and (
            prefix.endswith(PREFIX_BOUNDARY) or not rest or rest.startswith(PREFIX_BOUNDARY)
        ):
            return value
    raise inputs.invalid({"return_url": "must start with one of CONNECTIONS_CONNECT_RETURN_URLS"})


def _shop_domain(connector: Connector, value: Any) -> str | None:
    """The shop the authorize link goes to: required by a provider whose credentials name one
    (Shopify), refused by the others."""
    if "shop_domain" not in connector.credentials_model.model_fields:
        if value is not None:
            raise inputs.invalid({"shop_domain": f"a {connector.type} account has no shop"})
        return None
    if not isinstance(value, str):
        raise inputs.invalid({"shop_domain": "required: the shop's <name>.myshopify.com domain"})
    try:
        return shop_domain(value)
    except ValueError as exc:
        raise inputs.invalid({"shop_domain": str(exc)}) from None
