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


class KeysMisconfigured(VaultError):
    """The key setting itself is missing or malformed: the process cannot start. The message
    names the setting and the key's position, never a key."""


SETTING = "CONNECTIONS_ENCRYPTION_KEYS"
MAKE_A_KEY = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)


class Vault:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise KeysMisconfigured(f"no encryption key configured ({SETTING})")
        fernets = []
        for number, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode()))
            except (ValueError, TypeError):
                where = f"key {number} of {len(keys)}" if len(keys) > 1 else "the key"
                raise KeysMisconfigured(
                    f"{SETTING} must be comma-separated Fernet keys (32 url-safe base64-encoded "
                    f"bytes each); {where} is not one. Make one with: {MAKE_A_KEY}"
                ) from None
        self._fernet = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: str | None, var_dir: Path, *, allow_dev_key: bool) -> Vault:
        """Keys from the setting; in development, a key generated once into `var/`."""
        if value:
            return cls([k for k in value.split(",") if k.strip()])
        if not allow_dev_key:
            raise KeysMisconfigured(
                f"{SETTING} is required outside development (comma-separated Fernet keys, "
                f"newest first). Make one with: {MAKE_A_KEY}"
            )
        path = var_dir / "dev-encryption.key"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(Fernet.generate_key())
                path.chmod(0o600)
                log.warning("dev_encryption_key_generated", path=str(path))
            key = path.read_text().strip()
        except OSError as exc:
            raise KeysMisconfigured(
                f"cannot read or create the development key {path}: {exc.strerror or exc}"
            ) from None
        return cls([key])

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
