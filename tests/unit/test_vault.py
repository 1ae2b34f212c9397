"""Credentials at rest: written with the newest key, read with any, re-encrypted on rotation."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from worker.vault import Vault, VaultError

SECRET = {"api_key": "sk_test_supersecret1234"}


def test_roundtrip_and_ciphertext_hides_the_secret() -> None:
    vault = Vault([Fernet.generate_key().decode()])
    token = vault.encrypt(SECRET)
    assert b"supersecret" not in token
    assert vault.decrypt(token) == SECRET


def test_rotation_moves_tokens_to_the_newest_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = Vault([old]).encrypt(SECRET)
    both = Vault([new, old])
    assert both.decrypt(token) == SECRET
    rotated = both.rotate(token)
    assert Vault([new]).decrypt(rotated) == SECRET
    with pytest.raises(VaultError):
        Vault([new]).decrypt(token)


def test_unknown_key_and_bad_keys_are_clear_errors() -> None:
    token = Vault([Fernet.generate_key().decode()]).encrypt(SECRET)
    with pytest.raises(VaultError, match="not configured"):
        Vault([Fernet.generate_key().decode()]).decrypt(token)
    with pytest.raises(VaultError, match="Fernet keys"):
        Vault(["not-a-key"])
    with pytest.raises(VaultError, match="no encryption key"):
        Vault([])


def test_dev_key_is_generated_once_and_only_in_development(tmp_path: Path) -> None:
    first = Vault.from_setting(None, tmp_path, allow_dev_key=True)
    token = first.encrypt(SECRET)
    again = Vault.from_setting(None, tmp_path, allow_dev_key=True)
    assert again.decrypt(token) == SECRET
    assert (tmp_path / "dev-encryption.key").stat().st_mode & 0o777 == 0o600
    with pytest.raises(VaultError, match="required outside development"):
        Vault.from_setting(None, tmp_path, allow_dev_key=False)
