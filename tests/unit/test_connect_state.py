"""The connect session's state: signed with a key derived from the service token, bound to the
session, its org, actor, type and account, unexpired and unused; every way it can be wrong."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from worker.service.connect_state import (
    EXPIRED,
    FORGED,
    MALFORMED,
    OTHER_TYPE,
    REUSED,
    Claims,
    StateRefused,
    session_of,
    sign,
    state_key,
    verify,
)

KEY = state_key("service-token-for-tests")
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLAIMS = Claims(
    session_id=uuid.UUID("5f1d2c3b-4a59-4e68-9d7c-0b1a2c3d4e5f"),
    org_id="org-1",
    user_id="u-admin",
    role="admin",
    type="fortnox",
    account_id=None,
    expires_at=NOW + timedelta(minutes=10),
)


def refusal(state: str | None, claims: Claims = CLAIMS, **kwargs: object) -> str:
    options: dict = {"called_type": claims.type, "used": False, **kwargs}
    now = options.pop("now", NOW)
    key = options.pop("key", KEY)
    with pytest.raises(StateRefused) as refused:
        verify(key, state, claims, now, **options)
    assert refused.value.message  # always words for the page
    return refused.value.kind


def test_a_state_it_signed_verifies() -> None:
    verify(KEY, sign(KEY, CLAIMS), CLAIMS, NOW, called_type="fortnox")


def test_the_state_is_version_session_expiry_and_an_hmac_sha256_over_the_claims() -> None:
    state = sign(KEY, CLAIMS)
    version, session_hex, expires, mac = state.split(".")
    assert (version, session_hex) == ("v1", CLAIMS.session_id.hex)
    assert int(expires) == int(CLAIMS.expires_at.timestamp())
    message = json.dumps(
        ["v1", CLAIMS.session_id.hex, "org-1", "u-admin", "admin", "fortnox", "", int(expires)],
        separators=(",", ":"),
    ).encode()
    digest = hmac.new(KEY, message, hashlib.sha256).digest()
    assert mac == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    # Who is connecting stays out of the link the provider sees.
    assert "org-1" not in state
    assert "u-admin" not in state


def test_the_key_is_derived_not_the_token_itself() -> None:
    assert KEY != b"service-token-for-tests"
    assert len(KEY) == 32
    assert state_key("service-token-for-tests") == KEY
    assert state_key("another-token") != KEY


def test_a_state_signed_with_another_key_is_forged() -> None:
    other = sign(state_key("another-token"), CLAIMS)
    assert refusal(other) == FORGED


@pytest.mark.parametrize("position", [1, 2, 3])
def test_a_tampered_state_is_refused(position: int) -> None:
    parts = sign(KEY, CLAIMS).split(".")
    original = parts[position]
    parts[position] = original[:-1] + ("0" if original[-1] != "0" else "1")
    assert refusal(".".join(parts)) == FORGED


def test_a_later_expiry_written_into_the_state_is_forged() -> None:
    version, session_hex, expires, mac = sign(KEY, CLAIMS).split(".")
    assert refusal(f"{version}.{session_hex}.{int(expires) + 3600}.{mac}") == FORGED


def test_an_expired_state_is_refused() -> None:
    state = sign(KEY, CLAIMS)
    assert refusal(state, now=CLAIMS.expires_at) == EXPIRED
    assert refusal(state, now=CLAIMS.expires_at + timedelta(days=1)) == EXPIRED


def test_a_used_state_is_refused_as_reused() -> None:
    assert refusal(sign(KEY, CLAIMS), used=True) == REUSED


@pytest.mark.parametrize(
    "change",
    [
        {"org_id": "org-2"},
        {"user_id": "u-other"},
        {"role": "collaborator"},
        {"account_id": uuid.uuid4()},
        {"type": "hubspot"},
        {"session_id": uuid.uuid4()},
    ],
    ids=["other org", "other actor", "other role", "other account", "other type", "other session"],
)
def test_a_state_for_other_claims_is_forged(change: dict) -> None:
    """The verifier rebuilds the claims from the stored session: a state made for another org,
    actor, account or type does not match it."""
    state = sign(KEY, CLAIMS)
    other = dataclasses.replace(CLAIMS, **change)
    assert refusal(state, other, called_type=other.type) == FORGED


def test_a_reconnect_state_is_bound_to_its_account() -> None:
    reconnect = dataclasses.replace(CLAIMS, account_id=uuid.uuid4())
    state = sign(KEY, reconnect)
    verify(KEY, state, reconnect, NOW, called_type="fortnox")
    assert refusal(state, dataclasses.replace(reconnect, account_id=None)) == FORGED
    assert refusal(sign(KEY, CLAIMS), reconnect) == FORGED


def test_a_state_brought_to_another_types_callback_is_refused() -> None:
    assert refusal(sign(KEY, CLAIMS), called_type="hubspot") == OTHER_TYPE


def test_the_signature_is_checked_before_anything_else_is_said() -> None:
    """A forgery learns nothing: not that the session was used, nor that it expired."""
    forged = sign(state_key("another-token"), CLAIMS)
    assert refusal(forged, used=True, now=CLAIMS.expires_at + timedelta(days=1)) == FORGED


@pytest.mark.parametrize(
    "state",
    [
        None,
        "",
        "v1",
        "v1.abc.1.x",
        "v2." + CLAIMS.session_id.hex + ".1.x",
        "v1." + CLAIMS.session_id.hex + ".soon.x",
        "v1." + str(CLAIMS.session_id) + ".1.x",  # the dashed spelling of the id
        "v1." + CLAIMS.session_id.hex.upper() + ".1.x",
        "v1." + CLAIMS.session_id.hex + ".1.x.y",
        "v1." + CLAIMS.session_id.hex + "." + "9" * 30 + ".x",
        "x" * 1000,
    ],
)
def test_malformed_states_are_refused(state: str | None) -> None:
    with pytest.raises(StateRefused) as refused:
        session_of(state)
    assert refused.value.kind == MALFORMED
    assert refusal(state) == MALFORMED


def test_session_of_names_the_session_and_expiry_it_claims() -> None:
    assert session_of(sign(KEY, CLAIMS)) == (CLAIMS.session_id, CLAIMS.expires_at)
