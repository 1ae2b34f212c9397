"""Credentials encrypted at rest with MultiFernet: written with the newest key, read with any."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = structlog.get_logger(__name__)


class VaultError(Exception):
    """Credentials could not be read: the key that wrote them is not configured."""


class Vault:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise VaultError("no encryption key configured (CONNECTIONS_ENCRYPTION_KEYS)")
        try:
            self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise VaultError(
                "CONNECTIONS_ENCRYPTION_KEYS must be comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes each)"
            ) from exc

    @classmethod
    def from_setting(cls, value: str | None, var_dir: Path, *, allow_dev_key: bool) -> Vault:
        """Keys from the setting; in development, a key generated once into `var/`."""
        if value:
            return cls([k for k in value.split(",") if k.strip()])
        if not allow_dev_key:
            raise VaultError("CONNECTIONS_ENCRYPTION_KEYS is required outside development")
        path = var_dir / "dev-encryption.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
            log.warning("dev_encryption_key_generated", path=str(path))
        return cls([path.read_text().strip()])

    def encrypt(self, credentials: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            value = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise VaultError(
                "credentials were encrypted with a key that is not configured"
            ) from exc
        if not isinstance(value, dict):
            raise VaultError("stored credentials are not an object")
        return value

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt under the newest key (a no-op in meaning, a key change in bytes)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise VaultError(
                "credentials were encrypted with a key that is not configured"
            ) from exc
