"""Sealed credentials: a job's credentials encrypted with the vault's keys (`credentials_sealed`),
so the broker, its persistence and Flower never hold them in the clear.

A sealed value is the vault's Fernet token, as text, of `{"sealed_credentials": {...}}`: the
wrapper keeps an account's stored credentials (the same vault, a bare object) from being passed
off as a job's sealed ones. Only the worker's keys open it; it is opened inside the job.
"""

from __future__ import annotations

from typing import Any

from worker.service.outcomes import Reason, Rejected
from worker.vault import Vault, VaultError

WRAPPER = "sealed_credentials"
FIELD = "credentials_sealed"
MAX_LENGTH = 64 * 1024  # far above any provider's credentials; refuses junk before decrypting

UNREADABLE = (
    "cannot be opened: it was not sealed with this worker's keys, or it was altered; seal the "
    "credentials again (the HTTP job intake and connect sessions do)"
)


def seal(vault: Vault, credentials: dict[str, Any]) -> str:
    """The credentials as a token only the vault's keys open."""
    return vault.encrypt({WRAPPER: credentials}).decode("ascii")


def unseal(vault: Vault, text: Any) -> dict[str, Any]:
    """The credentials inside `text`; `invalid` (naming `credentials_sealed`, never echoing it)
    for anything that is not a sealed value this vault made."""
    if not isinstance(text, str) or not text or len(text) > MAX_LENGTH:
        raise _refused("must be the sealed credentials as text")
    try:
        opened = vault.decrypt(text.encode("ascii"))
    except (VaultError, UnicodeEncodeError, ValueError):
        raise _refused(UNREADABLE) from None
    credentials = opened.get(WRAPPER)
    if len(opened) != 1 or not isinstance(credentials, dict):
        raise _refused(UNREADABLE)
    return credentials


def _refused(why: str) -> Rejected:
    return Rejected(Reason.INVALID, "the sealed credentials cannot be used", fields={FIELD: why})
