"""`/.well-known/jwks.json` as a FastAPI router; the controller mounts it.

    app.include_router(make_jwks_router(".zerodown/keys"))

The set holds next, active and retiring keys (public halves only). Cache-Control tells verifiers
to cache it no longer than the keyring's jwks_cache_ttl, which is what the rotation schedule
assumes. Public by design: it holds public keys only, and verifiers must be able to fetch it.

With no keyring yet the set is empty, `{"keys": []}` (RFC 7517 §5 requires the `keys` member,
not that it holds a key), and not cached, so a keyring created later is seen at once. A keyring
that exists but cannot be read is a 503: verifiers then keep the set they cached, where an empty
one would make them reject every token.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from zerodown.keys.model import KeyringError
from zerodown.keys.storage import KeyringDir, jwks
from zerodown.keys.tokens import TokenSigner


def make_jwks_router(
    keyring_dir: str | Path, *, clock: Callable[[], float] = time.time
) -> APIRouter:
    router = APIRouter()
    # TokenSigner's cache reloads keyring.json only when it changes; it never loads a private key
    # unless asked to sign, which this router never does.
    reader = TokenSigner(KeyringDir(keyring_dir), clock=clock)

    @router.get("/.well-known/jwks.json", tags=["keys"])
    def jwks_json() -> JSONResponse:
        if not reader.dir.exists():
            return JSONResponse(
                {"keys": []},
                headers={"Cache-Control": "no-cache"},
                media_type="application/jwk-set+json",
            )
        try:
            ring = reader.keyring()
        except KeyringError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        max_age = int(ring.policy.jwks_cache_ttl)
        return JSONResponse(
            jwks(ring, clock()),
            headers={"Cache-Control": f"public, max-age={max_age}"},
            media_type="application/jwk-set+json",
        )

    return router
