"""The JWKS router on a real uvicorn, a signer and a verifier through a rotation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from zerodown.keys.jwks import make_jwks_router
from zerodown.keys.model import Policy
from zerodown.keys.storage import PRIVATE_MEMBERS, KeyringDir
from zerodown.keys.tokens import JWKSUnavailable, JWKSVerifier, TokenError, TokenSigner

Serve = Callable[[Any], AbstractContextManager[str]]
T0 = 2_000_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keyring(tmp_path: Path) -> KeyringDir:
    d = KeyringDir(tmp_path / "keys")
    d.init(alg="ES256", policy=Policy(jwks_cache_ttl=60, max_token_lifetime=300), now=T0)
    return d


@pytest.fixture
def jwks_url(keyring: KeyringDir, clock: Clock, asgi_server: Serve) -> Iterator[str]:
    app = FastAPI()
    app.include_router(make_jwks_router(keyring.path, clock=clock))
    with asgi_server(app) as base:
        yield f"{base}/.well-known/jwks.json"


def test_jwks_endpoint_serves_public_keys_with_cache_control(
    jwks_url: str, keyring: KeyringDir
) -> None:
    r = httpx.get(jwks_url)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "public, max-age=60"
    keys = r.json()["keys"]
    assert [k["kid"] for k in keys] == [keyring.load().keys[0].kid]
    assert not PRIVATE_MEMBERS & keys[0].keys()


def test_verifier_follows_a_rotation_without_rejecting_a_token(
    jwks_url: str, keyring: KeyringDir, clock: Clock
) -> None:
    signer = TokenSigner(keyring, clock=clock)
    verifier = JWKSVerifier(jwks_url, cache_ttl=60, clock=clock)
    old_token = signer.sign({"sub": "ann"}, lifetime=300)
    assert verifier.verify(old_token)["sub"] == "ann"
    keyring.rotate(now=clock.t)  # next key published now, signs at +60 s
    for step in range(0, 60 + 300 + 60, 10):  # walk through the rotation, 10 s at a time
        clock.t = T0 + step
        token = signer.sign({"sub": "bob"}, lifetime=300)
        assert verifier.verify(token)["sub"] == "bob"
        if step <= 300:
            assert verifier.verify(old_token)["sub"] == "ann"
    # The verifier never had to chase an unknown kid: the schedule covers its cache.
    assert verifier.fetches == len(range(0, 420, 60))


def test_unknown_kid_refreshes_a_bounded_number_of_times(
    jwks_url: str, keyring: KeyringDir, clock: Clock, tmp_path: Path
) -> None:
    stranger = KeyringDir(tmp_path / "other")
    stranger.init(alg="ES256", policy=Policy(), now=T0)
    forged = TokenSigner(stranger, clock=clock).sign({"sub": "eve"})
    verifier = JWKSVerifier(jwks_url, cache_ttl=60, max_refreshes=2, clock=clock)
    with pytest.raises(TokenError, match="unknown signing key"):
        verifier.verify(forged)
    assert verifier.fetches == 1  # first fetch; refresh refused inside min_refresh_interval
    clock.t += 5
    with pytest.raises(TokenError, match="unknown signing key"):
        verifier.verify(forged)
    assert verifier.fetches == 2  # one refresh, then the interval stops a second


def test_a_kid_published_after_the_cache_was_filled_is_found_by_refreshing(
    jwks_url: str, keyring: KeyringDir, clock: Clock
) -> None:
    """Misconfigured caches (longer than the schedule) still converge: refresh on unknown kid."""
    verifier = JWKSVerifier(jwks_url, cache_ttl=3600, clock=clock)
    signer = TokenSigner(keyring, clock=clock)
    verifier.verify(signer.sign({}))
    keyring.rotate(now=clock.t)
    clock.t += 61
    assert verifier.verify(signer.sign({"sub": "x"}))["sub"] == "x"
    assert verifier.fetches == 2


def test_async_verify_and_refusals(jwks_url: str, keyring: KeyringDir, clock: Clock) -> None:
    signer = TokenSigner(keyring, clock=clock)
    verifier = JWKSVerifier(jwks_url, clock=clock, leeway=10)
    token = signer.sign({"sub": "ann"}, lifetime=100)
    assert asyncio.run(verifier.averify(token))["sub"] == "ann"
    clock.t += 111
    with pytest.raises(TokenError, match="expired"):
        asyncio.run(verifier.averify(token))
    head, body, sig = token.split(".")
    with pytest.raises(TokenError, match="refused"):
        verifier.verify(f"{head}.{body}.{sig[:-4]}AAAA")
    with pytest.raises(TokenError, match="not a JWT"):
        verifier.verify("garbage")


def test_jwks_down_at_first_use_is_unavailable_not_a_bad_token(clock: Clock) -> None:
    from support.services import free_port

    verifier = JWKSVerifier(f"http://127.0.0.1:{free_port()}/.well-known/jwks.json", clock=clock)
    with pytest.raises(JWKSUnavailable, match="cannot fetch"):
        verifier.verify("eyJraWQiOiJhIn0.e30.x")


def test_jwks_server_going_away_keeps_the_cached_set_and_backs_off(
    keyring: KeyringDir, clock: Clock, asgi_server: Serve
) -> None:
    app = FastAPI()
    app.include_router(make_jwks_router(keyring.path, clock=clock))
    signer = TokenSigner(keyring, clock=clock)
    with asgi_server(app) as base:
        verifier = JWKSVerifier(f"{base}/.well-known/jwks.json", cache_ttl=60, clock=clock)
        verifier.verify(signer.sign({}))
    clock.t += 61  # cache stale, server gone
    for _ in range(5):
        assert verifier.verify(signer.sign({"sub": "ann"}))["sub"] == "ann"
    assert verifier._tried_at == clock.t and verifier.fetches == 1  # one failed attempt, not 5


def test_concurrent_async_verifies_share_one_fetch(
    jwks_url: str, keyring: KeyringDir, clock: Clock
) -> None:
    signer = TokenSigner(keyring, clock=clock)
    verifier = JWKSVerifier(jwks_url, clock=clock)
    tokens = [signer.sign({"sub": f"u{i}"}) for i in range(20)]

    async def main() -> list[dict[str, Any]]:
        first = asyncio.create_task(verifier.averify(tokens[0]))
        for _ in range(1000):  # until the first request's fetch is on the wire
            if verifier._tried_at is not None:
                break
            await asyncio.sleep(0)
        assert verifier._tried_at is not None and verifier.fetches == 0
        # Requests arriving while that fetch runs join it instead of failing for want of keys.
        rest = await asyncio.gather(*(verifier.averify(t) for t in tokens[1:]))
        return [await first, *rest]

    claims = asyncio.run(main())
    assert [c["sub"] for c in claims] == [f"u{i}" for i in range(20)]
    assert verifier.fetches == 1


def test_jwks_without_a_keyring_is_empty_until_one_is_made(
    tmp_path: Path, clock: Clock, asgi_server: Serve
) -> None:
    app = FastAPI()
    app.include_router(make_jwks_router(tmp_path / "keys", clock=clock))
    with asgi_server(app) as base:
        url = f"{base}/.well-known/jwks.json"
        empty = httpx.get(url)
        assert empty.status_code == 200 and empty.json() == {"keys": []}
        assert empty.headers["cache-control"] == "no-cache"  # a keyring made later counts at once
        ring = KeyringDir(tmp_path / "keys")
        ring.init(alg="ES256", policy=Policy(jwks_cache_ttl=60, max_token_lifetime=300), now=T0)
        assert [k["kid"] for k in httpx.get(url).json()["keys"]] == [ring.load().keys[0].kid]
        # damaged: a 503, so verifiers keep their cached set instead of an empty one
        ring.meta_file.write_text("{")
        damaged = httpx.get(url)
        assert damaged.status_code == 503 and "damaged" in damaged.json()["error"], damaged.text
