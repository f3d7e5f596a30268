"""Sign with the active key; verify by `kid` against a JWKS URL with a bounded-refresh cache.

The signer reads the keyring directory (cached until keyring.json changes) and picks the active
key for the current time, so every process signing from the same directory switches keys at the
same instant without coordination. The verifier caches the JWK set for `cache_ttl`; on a `kid`
it does not know it refetches at most `max_refreshes` times per token and at most once per
`min_refresh_interval`, so a flood of tokens with made-up kids cannot flood the JWKS server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from zerodown.keys import model
from zerodown.keys.model import ALGORITHMS, Keyring, KeyringError
from zerodown.keys.storage import KeyringDir, SigningKey

log = logging.getLogger("zerodown.keys")


class TokenError(ValueError):
    """The token is not acceptable (401): the message says why."""


class JWKSUnavailable(TokenError):
    """The JWK set could not be fetched and none is cached (503, not the user's fault)."""


class _Registry(JWSRegistry):
    """JWSRegistry without joserfc's warning for "EdDSA".

    RFC 9864 prefers the fully specified "Ed25519", but "EdDSA" is what verifiers deployed today
    understand, so zerodown signs with it; the algorithm list is always explicit here.
    """

    def get_alg(self, name: str) -> Any:
        if name not in self.algorithms or (self.allowed and name not in self.allowed):
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


def unverified_header(token: str) -> dict[str, Any]:
    try:
        head = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise TokenError("not a JWT (its header is not base64url JSON)") from None
    if not isinstance(header, dict):
        raise TokenError("not a JWT (its header is not a JSON object)")
    return header


class TokenSigner:
    """Signs JWTs with the keyring's active key. Every token gets `kid`, `iat` and `exp`.

    Tokens live `default_lifetime` seconds (default: 15 minutes or the policy's maximum).
    """

    def __init__(
        self,
        keyring_dir: str | Path | KeyringDir,
        *,
        default_lifetime: float | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.dir = keyring_dir if isinstance(keyring_dir, KeyringDir) else KeyringDir(keyring_dir)
        self.default_lifetime = default_lifetime
        self.clock = clock
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._ring: Keyring | None = None
        self._private: dict[str, SigningKey] = {}

    def __repr__(self) -> str:
        return f"TokenSigner({self.dir!r})"

    def keyring(self) -> Keyring:
        stamp = self.dir.meta_file.stat().st_mtime_ns if self.dir.exists() else None
        with self._lock:
            if self._ring is None or stamp != self._stamp:
                self._ring, self._stamp = self.dir.load(), stamp
            return self._ring

    def sign(self, claims: Mapping[str, Any], *, lifetime: float | None = None) -> str:
        ring = self.keyring()
        now = self.clock()
        if lifetime is None:
            lifetime = self.default_lifetime or min(900.0, ring.policy.max_token_lifetime)
        if not 0 < lifetime <= ring.policy.max_token_lifetime:
            # The retirement schedule assumes no token outlives max_token_lifetime.
            raise KeyringError(
                f"token lifetime {lifetime:g}s is outside (0, {ring.policy.max_token_lifetime:g}s]"
                "; raise max_token_lifetime in the keyring policy or issue shorter tokens"
            )
        key_info = model.active_key(ring, now)
        with self._lock:
            key = self._private.get(key_info.kid)
            if key is None:
                key = self._private[key_info.kid] = self.dir.private_key(key_info.kid)
        payload = {**claims, "iat": int(now), "exp": int(now + lifetime)}
        header = {"alg": key_info.alg, "kid": key_info.kid, "typ": "JWT"}
        return jwt.encode(header, payload, key, algorithms=[key_info.alg], registry=_Registry())


class JWKSVerifier:
    """Verifies JWTs by `kid` against a JWKS URL. `verify` for threads, `averify` for asyncio."""

    def __init__(
        self,
        jwks_url: str,
        *,
        cache_ttl: float = 300,
        max_refreshes: int = 1,
        min_refresh_interval: float = 1.0,
        leeway: float = 60,
        algorithms: Sequence[str] = ALGORITHMS,
        issuer: str | None = None,
        audience: str | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        self.jwks_url = jwks_url
        self.cache_ttl = cache_ttl
        self.max_refreshes = max_refreshes
        self.min_refresh_interval = min_refresh_interval
        self.leeway = leeway
        self.algorithms = list(algorithms)
        self.issuer = issuer
        self.audience = audience
        self.timeout = timeout
        self.clock = clock
        self.fetches = 0
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._last_error = ""
        self._lock = threading.Lock()
        self._inflight: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"JWKSVerifier({self.jwks_url!r}, kids={sorted(self._keys)})"

    # -- cache ---------------------------------------------------------------------------------
    # A failed fetch keeps the stale set (better than refusing everyone while the JWKS server is
    # briefly away), and no fetch, failed or not, is retried within min_refresh_interval.

    def _fresh(self, now: float) -> bool:
        return self._fetched_at is not None and now - self._fetched_at < self.cache_ttl

    def _may_fetch(self, now: float) -> bool:
        return self._tried_at is None or now - self._tried_at >= self.min_refresh_interval

    def _store(self, response: httpx.Response) -> None:
        response.raise_for_status()
        doc = response.json()
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("the answer is not a JWK set ({'keys': [...]})")
        usable = [
            k
            for k in doc["keys"]
            if isinstance(k, dict) and k.get("kid") and k.get("alg") in self.algorithms
        ]
        keyset = KeySet.import_key_set({"keys": usable})
        self._keys = {str(k.kid): k for k in keyset.keys}
        self._fetched_at = self.clock()
        self.fetches += 1

    def _fetch_sync(self) -> None:
        self._tried_at = self.clock()
        try:
            with httpx.Client(timeout=self.timeout) as client:
                self._store(client.get(self.jwks_url))
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            self._failed(exc)

    async def _fetch_async(self) -> None:
        self._tried_at = self.clock()
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                self._store(await client.get(self.jwks_url))
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self._last_error = f"cannot fetch {self.jwks_url}: {exc!r}"
        log.warning("%s%s", self._last_error, " (using the cached set)" if self._keys else "")

    async def _fetch_once(self) -> None:
        """Concurrent requests that find the cache stale share one fetch."""
        loop = asyncio.get_running_loop()
        task = self._inflight
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._inflight = loop.create_task(self._fetch_async())
        await asyncio.shield(task)

    # -- verification --------------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any]:
        kid = self._kid(token)
        with self._lock:
            if not self._fresh(self.clock()) and self._may_fetch(self.clock()):
                self._fetch_sync()
            for _ in range(self.max_refreshes):
                if kid in self._keys or not self._may_fetch(self.clock()):
                    break
                self._fetch_sync()
        return self._decode(token, kid)

    async def averify(self, token: str) -> dict[str, Any]:
        kid = self._kid(token)
        if not self._fresh(self.clock()) and self._should_fetch_async():
            await self._fetch_once()
        for _ in range(self.max_refreshes):
            if kid in self._keys or not self._should_fetch_async():
                break
            await self._fetch_once()
        return self._decode(token, kid)

    def _should_fetch_async(self) -> bool:
        """A fetch already running is always joined; a new one waits out the interval."""
        task = self._inflight
        running = (
            task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop()
        )
        return running or self._may_fetch(self.clock())

    def _kid(self, token: str) -> str:
        kid = unverified_header(token).get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("token has no `kid` header; zerodown signs every token with one")
        return kid

    def _decode(self, token: str, kid: str) -> dict[str, Any]:
        if self._fetched_at is None:
            raise JWKSUnavailable(self._last_error or f"no JWK set from {self.jwks_url} yet")
        key = self._keys.get(kid)
        if key is None:
            raise TokenError(f"unknown signing key {kid!r}: not in {self.jwks_url}")
        alg = key.alg
        try:
            decoded = jwt.decode(token, key, algorithms=[alg], registry=_Registry(algorithms=[alg]))
            options: dict[str, Any] = {"exp": {"essential": True}}
            if self.issuer is not None:
                options["iss"] = {"essential": True, "value": self.issuer}
            if self.audience is not None:
                options["aud"] = {"essential": True, "value": self.audience}
            claims_registry = jwt.JWTClaimsRegistry(
                now=lambda: int(self.clock()), leeway=int(self.leeway), **options
            )
            claims_registry.validate(decoded.claims)
        except JoseError as exc:
            reason = f"{exc.error}: {exc.description}" if exc.description else exc.error
            raise TokenError(f"token refused: {reason}") from None
        except ValueError as exc:
            raise TokenError(f"token refused: malformed ({exc})") from None
        return dict(decoded.claims)
