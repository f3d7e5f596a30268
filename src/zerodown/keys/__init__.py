"""JWT signing-key rotation: several keys published at once (JWKS), one signing, rotated on a
policy so a deploy never invalidates a token. See docs/keys.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zerodown.keys.jwks import make_jwks_router
    from zerodown.keys.model import KeyringError, Policy
    from zerodown.keys.storage import KeyringDir
    from zerodown.keys.tokens import JWKSUnavailable, JWKSVerifier, TokenError, TokenSigner

# Public name -> the module that defines it. Imported on first use, so that `import
# zerodown.flags.evaluate` (pure) does not pull in redis, httpx or fastapi.
_WHERE = {
    "JWKSUnavailable": "zerodown.keys.tokens",
    "JWKSVerifier": "zerodown.keys.tokens",
    "TokenError": "zerodown.keys.tokens",
    "TokenSigner": "zerodown.keys.tokens",
    "KeyringDir": "zerodown.keys.storage",
    "KeyringError": "zerodown.keys.model",
    "Policy": "zerodown.keys.model",
    "make_jwks_router": "zerodown.keys.jwks",
}

__all__ = [
    "JWKSUnavailable",
    "JWKSVerifier",
    "KeyringDir",
    "KeyringError",
    "Policy",
    "TokenError",
    "TokenSigner",
    "make_jwks_router",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
