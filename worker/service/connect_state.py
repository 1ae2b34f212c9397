"""The `state` of a connect session's authorize link: which session it is, until when, and a
signature over everything the session is bound to. Pure: no database, no clock of its own.

`v1.<session id, hex>.<expiry, unix seconds>.<signature>`; the signature is HMAC-SHA256, as
unpadded base64url, over the JSON list [version, session id, org, actor's user id and role, type,
account id or "", expiry]. Org, actor and account are signed but not written into the state: the
state travels through the provider's pages and logs, and it need not tell them who is connecting.
The verifier rebuilds the claims from the stored session and the callback's path, so a state
moved to another org, actor, type or account no longer matches.

The key is derived with HKDF-SHA256 from the service token (see `state_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
PURPOSE = b"standout-connections/connect-session-state/v1"
MAX_LENGTH = 200


class StateRefused(Exception):
    """The callback's state cannot be used; `kind` says why, the message says it to a person."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


MALFORMED = "malformed"
FORGED = "forged"
EXPIRED = "expired"
REUSED = "reused"
OTHER_TYPE = "other_type"

WORDS = {
    MALFORMED: "This link is not a valid connect link. Start connecting again.",
    FORGED: "This connect link was not made by us or was altered. Start connecting again.",
    EXPIRED: "This connect link has expired. Start connecting again.",
    REUSED: "This connect link was already used; it works once. Start connecting again to "
    "connect another account.",
    OTHER_TYPE: "This connect link is for another service. Start connecting again.",
}


def refused(kind: str) -> StateRefused:
    return StateRefused(kind, WORDS[kind])


@dataclass(frozen=True)
class Claims:
    """What a state is bound to."""

    session_id: uuid.UUID
    org_id: str
    user_id: str
    role: str
    type: str
    account_id: uuid.UUID | None
    expires_at: datetime

    def message(self) -> bytes:
        return json.dumps(
            [
                VERSION,
                self.session_id.hex,
                self.org_id,
                self.user_id,
                self.role,
                self.type,
                self.account_id.hex if self.account_id else "",
                _seconds(self.expires_at),
            ],
            separators=(",", ":"),
        ).encode()


def state_key(secret: str) -> bytes:
    """The signing key: HKDF-SHA256 of the service token, with this use as its `info`, so the
    token itself never signs anything and the key serves no other purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(
        secret.encode()
    )


def sign(key: bytes, claims: Claims) -> str:
    return f"{VERSION}.{claims.session_id.hex}.{_seconds(claims.expires_at)}.{_mac(key, claims)}"


def session_of(state: str | None) -> tuple[uuid.UUID, datetime]:
    """The session id and expiry a state names (both still unverified); `malformed` otherwise."""
    if not state or len(state) > MAX_LENGTH:
        raise refused(MALFORMED)
    parts = state.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
        raise refused(MALFORMED)
    try:
        session_id = uuid.UUID(hex=parts[1])
        expires_at = datetime.fromtimestamp(int(parts[2]), UTC)
    except (ValueError, OverflowError, OSError):
        raise refused(MALFORMED) from None
    if parts[1] != session_id.hex:  # one spelling only: the state is compared, not parsed loosely
        raise refused(MALFORMED)
    return session_id, expires_at


def verify(
    key: bytes,
    state: str | None,
    claims: Claims,
    now: datetime,
    *,
    called_type: str,
    used: bool = False,
) -> None:
    """Raise StateRefused unless `state` was signed with `key` for exactly `claims`, came back
    to the callback of `claims.type`, and is unused and unexpired at `now`. The signature is
    checked first: nothing else is said about a forgery."""
    session_id, _ = session_of(state)
    assert state is not None
    expected = sign(key, claims)
    if session_id != claims.session_id or not hmac.compare_digest(state, expected):
        raise refused(FORGED)
    if called_type != claims.type:
        raise refused(OTHER_TYPE)
    if used:
        raise refused(REUSED)
    if now >= claims.expires_at:
        raise refused(EXPIRED)


def _mac(key: bytes, claims: Claims) -> str:
    digest = hmac.new(key, claims.message(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _seconds(value: datetime) -> int:
    return int(value.timestamp())
