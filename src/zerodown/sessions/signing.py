"""Cookie signing with a keyring of secrets: the newest signs, every listed one verifies.

This is what Flask 3.1 (SECRET_KEY_FALLBACKS) and Django (SECRET_KEY_FALLBACKS) offer, for any
framework: to rotate the secret, put the new one first and keep the old one listed until every
cookie it signed has been re-signed or expired; nobody is logged out.

Each secret is first turned into a purpose-bound key, HMAC(secret, salt), so the same secret used
elsewhere in the app does not make session cookies forgeable from there, and vice versa.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_ENV = "ZERODOWN_SESSION_SECRETS"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Unsigned:
    value: str
    by_newest: bool
    """False when an older (fallback) key verified it: the caller should re-sign."""


class SecretKeyring:
    """Secrets for signing cookies, newest first. Never shows them in repr/str."""

    def __init__(self, secrets: Sequence[str | bytes], *, salt: str = "zerodown.session"):
        if not secrets:
            raise ValueError(
                "a session keyring needs at least one secret; set "
                f"{DEFAULT_ENV}='new-secret,old-secret' (newest first)"
            )
        keys: list[bytes] = []
        for i, secret in enumerate(secrets):
            raw = secret.encode() if isinstance(secret, str) else bytes(secret)
            if len(raw) < 16:
                raise ValueError(
                    f"session secret #{i + 1} is {len(raw)} bytes; use at least 16 random bytes "
                    '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
                )
            keys.append(hmac.new(raw, salt.encode(), hashlib.sha256).digest())
        self._keys = tuple(keys)

    @classmethod
    def from_env(cls, name: str = DEFAULT_ENV, *, salt: str = "zerodown.session") -> SecretKeyring:
        """Secrets from a comma-separated environment variable, newest first."""
        value = os.environ.get(name, "")
        secrets = [s.strip() for s in value.split(",") if s.strip()]
        if not secrets:
            raise ValueError(f"environment variable {name} is empty; set it to 'new,old' secrets")
        return cls(secrets, salt=salt)

    def __repr__(self) -> str:
        return f"SecretKeyring(<{len(self._keys)} secrets hidden>)"

    __str__ = __repr__

    def _mac(self, key: bytes, value: str) -> str:
        return _b64(hmac.new(key, value.encode(), hashlib.sha256).digest())

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(self._keys[0], value)}"

    def unsign(self, signed: str) -> Unsigned | None:
        """The value if any listed key signed it, else None."""
        value, dot, mac = signed.rpartition(".")
        if not dot or not value:
            return None
        for i, key in enumerate(self._keys):
            if hmac.compare_digest(self._mac(key, value), mac):
                return Unsigned(value=value, by_newest=i == 0)
        return None
