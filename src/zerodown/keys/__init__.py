"""JWT signing-key rotation: several keys published at once (JWKS), one signing, rotated on a
policy so a deploy never invalidates a token. See docs/keys.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerodown.lazy import exports

if TYPE_CHECKING:
    from zerodown.keys.jwks import make_jwks_router
    from zerodown.keys.model import KeyringError, Policy
    from zerodown.keys.storage import KeyringDir
    from zerodown.keys.tokens import JWKSUnavailable, JWKSVerifier, TokenError, TokenSigner

# Public name -> the module that defines it, imported on first use (zerodown.lazy).
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

__getattr__, __dir__ = exports(__name__, _WHERE)
