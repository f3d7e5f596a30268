"""A keyring in a directory (default `.zerodown/keys/`).

    keyring.json        policy and public facts of every key (safe to read, 0644)
    key-<kid>.private.jwk   one private key per file, created 0600 in a 0700 directory

Private keys are read only to sign, never copied into the `Keyring` data, and deleted when their
key retires. Writers (init, rotate, refresh) hold an flock so two commands cannot interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey

from zerodown.keys import model
from zerodown.keys.model import KeyInfo, Keyring, KeyringError, KeyState, Policy, Transition

DEFAULT_DIR = Path(".zerodown/keys")
_META = "keyring.json"
_FORMAT = 1

SigningKey = ECKey | OKPKey | RSAKey

# JWK members that carry private material (RFC 7518 section 6): never written outside key-<kid>.private.jwk.
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def public_only(jwk: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(jwk).items() if k not in PRIVATE_MEMBERS}


def generate(alg: str) -> tuple[str, dict[str, Any], SigningKey]:
    """A new key pair for `alg`: (kid, public JWK, private key). kid is the RFC 7638 thumbprint."""
    key: SigningKey
    if alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519")
    elif alg == "ES256":
        key = ECKey.generate_key("P-256")
    elif alg == "RS256":
        key = RSAKey.generate_key(2048)
    else:
        raise KeyringError(f"algorithm {alg!r} is not supported; use one of EdDSA, ES256, RS256")
    kid = key.thumbprint()
    public = public_only(key.as_dict(private=False))
    public.update(kid=kid, alg=alg, use="sig")
    return kid, public, key


class KeyringDir:
    def __init__(self, path: str | Path = DEFAULT_DIR):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"KeyringDir({str(self.path)!r})"

    @property
    def meta_file(self) -> Path:
        return self.path / _META

    def exists(self) -> bool:
        return self.meta_file.exists()

    def _private_file(self, kid: str) -> Path:
        if not kid or "/" in kid or kid.startswith("."):
            raise KeyringError(f"bad key id {kid!r} in {self.meta_file}")
        return self.path / f"key-{kid}.private.jwk"  # kids may start with "-"

    # -- reading -------------------------------------------------------------------------------

    def load(self) -> Keyring:
        try:
            text = self.meta_file.read_text()
        except FileNotFoundError:
            raise KeyringError(
                f"no keyring in {self.path}/; run `zerodown keys init --dir {self.path}`"
            ) from None
        try:
            doc = json.loads(text)
            if doc.get("format") != _FORMAT:
                raise KeyringError(
                    f"{self.meta_file}: format {doc.get('format')!r} is not {_FORMAT}; "
                    "upgrade zerodown"
                )
            policy = Policy(**doc["policy"])
            keys = tuple(
                KeyInfo(
                    kid=k["kid"],
                    alg=k["alg"],
                    published_at=float(k["published_at"]),
                    activates_at=float(k["activates_at"]),
                    public_jwk=k["public_jwk"],
                    state=KeyState(k["state"]),
                )
                for k in doc["keys"]
            )
        except KeyringError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"{self.meta_file} is damaged ({exc!r}); restore it") from None
        return Keyring(policy=policy, keys=keys)

    def private_key(self, kid: str) -> SigningKey:
        path = self._private_file(kid)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyringError(f"private key of {kid} is missing from {self.path}/") from None
        kty = data.get("kty")
        if kty == "OKP":
            return OKPKey.import_key(data)
        if kty == "EC":
            return ECKey.import_key(data)
        if kty == "RSA":
            return RSAKey.import_key(data)
        raise KeyringError(f"{path}: unsupported key type {kty!r}")

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def save(self, ring: Keyring) -> None:
        doc = {
            "format": _FORMAT,
            "policy": asdict(ring.policy),
            "keys": [
                {
                    "kid": k.kid,
                    "alg": k.alg,
                    "state": k.state.value,
                    "published_at": k.published_at,
                    "activates_at": k.activates_at,
                    "public_jwk": public_only(k.public_jwk),
                }
                for k in ring.keys
            ],
        }
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".keyring-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.meta_file)

    def _write_private(self, kid: str, key: SigningKey) -> None:
        path = self._private_file(kid)
        # O_EXCL + mode 0600 at creation: the secret is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(key.as_dict(private=True)), f)

    def init(self, *, alg: str, policy: Policy, now: float) -> Keyring:
        with self.locked():
            os.chmod(self.path, 0o700)
            if self.exists():
                raise KeyringError(
                    f"a keyring already exists in {self.path}/; use `zerodown keys rotate`"
                )
            kid, public, key = generate(alg)
            ring = model.initial(policy, kid=kid, alg=alg, public_jwk=public, now=now)
            self._write_private(kid, key)
            self.save(ring)
            return ring

    def rotate(self, *, now: float, alg: str | None = None) -> Keyring:
        with self.locked():
            ring, _ = self._refresh(now)
            if alg is None:
                alg = model.active_key(ring, now).alg
            kid, public, key = generate(alg)
            ring = model.rotate(ring, kid=kid, alg=alg, public_jwk=public, now=now)
            self._write_private(kid, key)
            self.save(ring)
            return ring

    def refresh(self, now: float) -> tuple[Keyring, tuple[Transition, ...]]:
        """Bring stored states to `now` and delete private keys of retired keys."""
        with self.locked():
            return self._refresh(now)

    def _refresh(self, now: float) -> tuple[Keyring, tuple[Transition, ...]]:
        ring, moves = model.advance(self.load(), now)
        for key in ring.keys:
            if key.state is KeyState.RETIRED:
                self._private_file(key.kid).unlink(missing_ok=True)
        if moves:
            self.save(ring)
        return ring, moves


def jwks(ring: Keyring, now: float) -> dict[str, Any]:
    """The public JWK set: next, active and retiring keys. Built from public facts only."""
    return {"keys": [public_only(k.public_jwk) for k in model.published_keys(ring, now)]}
