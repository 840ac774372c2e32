"""Secrets sealed at rest: AES-256-GCM, a random nonce each, bound to their owner and name (a
sealed value copied to another user's row or name does not open). The key is a setting, or
made once into the data dir (0600)."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agentcell.errors import AgentcellError, InvalidSetting

VERSION = b"\x01"  # the first byte of every sealed value: which scheme (keys may rotate later)
NONCE_BYTES = 12


class SecretUnreadable(AgentcellError):
    """A sealed secret does not open with this server's key."""

    status_code = 500
    code = "secret_unreadable"
    hint = (
        "the secrets key changed (AGENTCELL_SECRETS_KEY or data_dir/secrets.key): restore it, "
        "or store the secret again"
    )


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self.aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: bytes) -> bytes:
        """A key of its own for another use (signing tokens), from this deployment's key."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=b"agentcell " + purpose).derive(self._key)

    @classmethod
    def load_or_create(cls, key: str, path: Path) -> SecretBox:
        """The box of ``key`` (base64 of 32 bytes), else of the key file at ``path``, made
        there (0600, atomically: of two servers starting at once, one key wins) if missing."""
        if key:
            return cls(_decode(key, "AGENTCELL_SECRETS_KEY"))
        if not path.exists():
            new = base64.b64encode(secrets.token_bytes(32))
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, new + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another process made it first: theirs wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return cls(_decode(path.read_text().strip(), str(path)))

    def seal(self, owner: str, name: str, value: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return VERSION + nonce + self.aead.encrypt(nonce, value.encode(), _bound(owner, name))

    def open(self, owner: str, name: str, blob: bytes) -> str:
        if blob[:1] != VERSION:
            raise SecretUnreadable(f"secret {name} is sealed in an unknown way")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self.aead.decrypt(nonce, sealed, _bound(owner, name)).decode()
        except InvalidTag:
            raise SecretUnreadable(f"secret {name} does not open with this server's key") from None


def _bound(owner: str, name: str) -> bytes:
    return f"{owner}\0{name}".encode()


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise InvalidSetting(
            f"{where} is not a base64 32-byte key",
            hint="make one with: openssl rand -base64 32",
        )
    return key
