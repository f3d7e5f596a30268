"""The proof: logged-in users under load through a release change lose nothing.

Two plain app processes (zerodown/demo/authapp.py) play the old and the new release: the old one
serves alone, then both serve side by side (round-robin, as a rolling deploy does), then the old
one gets SIGTERM and the new one serves alone. Half of the simulated users carry a session cookie,
half a bearer token verified against a JWKS endpoint; the signing key rotates while both
releases serve. Every user keeps its cookie or token throughout (token users re-issue theirs now
and then, as clients refresh, so tokens from both keys are in flight).

- Redis sessions (and SQLite, the embedded default, shared by both processes): 0 failed
  requests, 0 logouts (no 401).
- In-memory sessions (the baseline): the number of users logged out is counted and printed.

The lead moves this onto a real `zerodown deploy` once the engine exists.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import zerodown.demo.authapp as authapp
from support.services import free_port
from zerodown.keys.jwks import make_jwks_router
from zerodown.keys.model import Policy
from zerodown.keys.storage import KeyringDir
from zerodown.keys.tokens import TokenSigner, unverified_header

pytestmark = pytest.mark.slow

Serve = Callable[[Any], AbstractContextManager[str]]
APP = Path(authapp.__file__)
USERS = 8  # per kind: cookie users and token users
THINK = 0.02  # seconds between one user's requests
JWKS_TTL = 1.0  # keyring's jwks_cache_ttl and the apps' JWKS_CACHE_TTL


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0  # connection errors and 5xx: what a user sees as an outage
    unauthorized: int = 0  # 401: what a user sees as being logged out
    logged_out: set[str] = field(default_factory=set)
    kids: set[str] = field(default_factory=set)
    versions: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class Instance:
    def __init__(self, version: str, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), str(self.port), version],
            env={**os.environ, **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, f"app exited early, see {self.log.name}"
                try:
                    if client.get(f"{self.url}/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"{self.url} not ready within 20 s")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.log.close()
        return code


class Targets:
    """Where users send requests now: a tiny stand-in for the router's pool."""

    def __init__(self, *urls: str):
        self.urls = list(urls)
        self.n = 0

    def pick(self) -> str:
        self.n += 1
        return self.urls[self.n % len(self.urls)]


async def cookie_user(name: str, targets: Targets, stop: asyncio.Event, tally: Tally) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(f"{targets.pick()}/login", params={"user": name})
        assert r.status_code == 200, r.text
        while not stop.is_set():
            status = await one(client, f"{targets.pick()}/me", {}, name, tally)
            if status == 401:
                # A logged-out user logs in again, as a person would.
                await client.post(f"{targets.pick()}/login", params={"user": name})
            await asyncio.sleep(THINK)


async def token_user(
    name: str, targets: Targets, signer: TokenSigner, stop: asyncio.Event, tally: Tally
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        token = signer.sign({"sub": name}, lifetime=60)
        issued = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - issued > 0.3:  # clients refresh tokens now and then
                token = signer.sign({"sub": name}, lifetime=60)
                issued = time.monotonic()
            tally.kids.add(str(unverified_header(token)["kid"]))
            headers = {"authorization": f"Bearer {token}"}
            await one(client, f"{targets.pick()}/api/me", headers, name, tally)
            await asyncio.sleep(THINK)


async def one(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], name: str, tally: Tally
) -> int:
    try:
        r = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        tally.failed += 1
        tally.errors.append(f"{url}: {exc!r}")
        return 0
    if r.status_code == 200:
        tally.ok += 1
        tally.versions.add(r.json()["version"])
    elif r.status_code == 401:
        tally.unauthorized += 1
        tally.logged_out.add(name)
        tally.errors.append(f"{url}: 401 {r.text}")
    else:
        tally.failed += 1
        tally.errors.append(f"{url}: {r.status_code} {r.text}")
    return r.status_code


@pytest.fixture
def keyring(tmp_path: Path) -> KeyringDir:
    d = KeyringDir(tmp_path / "keys")
    d.init(
        alg="EdDSA",
        policy=Policy(jwks_cache_ttl=JWKS_TTL, max_token_lifetime=60, clock_skew=1),
        now=time.time(),
    )
    return d


@pytest.fixture
def jwks_url(keyring: KeyringDir, asgi_server: Serve) -> Iterator[str]:
    """The controller's JWKS endpoint (the real router, served here by uvicorn)."""
    app = FastAPI()
    app.include_router(make_jwks_router(keyring.path))
    with asgi_server(app) as base:
        yield f"{base}/.well-known/jwks.json"


def rollout(env: dict[str, str], keyring: KeyringDir, tmp_path: Path, strategy: str) -> Tally:
    """Old alone → new started, the key rotates → traffic moves → old gets SIGTERM.

    rolling: old and new serve side by side (round-robin) while the new key becomes active.
    bluegreen: all traffic switches to the warm new release in one step, mid-rotation.
    """
    tally = Tally()
    signer = TokenSigner(keyring)

    async def main() -> None:
        old = Instance("v1", env, tmp_path / "v1.log")
        new: Instance | None = None
        try:
            await asyncio.to_thread(old.wait_ready)
            targets = Targets(old.url)
            stop = asyncio.Event()
            users = [
                asyncio.create_task(cookie_user(f"c{i}", targets, stop, tally))
                for i in range(USERS)
            ] + [
                asyncio.create_task(token_user(f"t{i}", targets, signer, stop, tally))
                for i in range(USERS)
            ]
            await asyncio.sleep(0.6)
            new = Instance("v2", env, tmp_path / "v2.log")
            await asyncio.to_thread(new.wait_ready)
            await asyncio.to_thread(keyring.rotate, now=time.time())
            if strategy == "rolling":
                targets.urls = [old.url, new.url]  # both serve side by side
                await asyncio.sleep(JWKS_TTL + 0.8)  # past the new key's activation
            else:
                await asyncio.sleep(JWKS_TTL / 2)  # the switch comes before the activation
                targets.urls = [new.url]
                await asyncio.sleep(JWKS_TTL / 2 + 0.8)
            targets.urls = [new.url]  # traffic leaves the old instance first …
            await asyncio.sleep(0.1)
            # … then SIGTERM: in-flight requests finish. uvicorn re-raises the signal after its
            # graceful shutdown, so a clean exit reads as -SIGTERM.
            assert await asyncio.to_thread(old.stop) in (0, -signal.SIGTERM)
            await asyncio.sleep(0.8)
            stop.set()
            await asyncio.gather(*users)
        finally:
            await asyncio.to_thread(old.stop)
            if new is not None:
                await asyncio.to_thread(new.stop)

    asyncio.run(main())
    return tally


@pytest.mark.parametrize(
    ("store", "strategy"),
    [("redis", "rolling"), ("redis", "bluegreen"), ("sqlite", "rolling")],
)
def test_shared_sessions_and_key_rotation_log_nobody_out(
    request: pytest.FixtureRequest,
    keyring: KeyringDir,
    jwks_url: str,
    tmp_path: Path,
    store: str,
    strategy: str,
) -> None:
    env = {
        "SESSIONS": store,
        "SESSION_SECRETS": "proof-secret-0123456789",
        "JWKS_URL": jwks_url,
        "JWKS_CACHE_TTL": str(JWKS_TTL),
    }
    if store == "redis":
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
        env["REDIS_PREFIX"] = f"test:{uuid.uuid4().hex}:"
    else:  # the embedded default: one file both processes share
        env["SESSION_DB"] = str(tmp_path / "sessions.sqlite3")
    tally = rollout(env, keyring, tmp_path, strategy)
    print(
        f"\n{strategy}, {store} sessions: {tally.ok} ok, {tally.failed} failed, "
        f"{tally.unauthorized} x 401"
    )
    assert tally.errors == []
    assert (tally.failed, tally.unauthorized) == (0, 0)
    assert tally.versions == {"v1", "v2"}
    assert len(tally.kids) == 2, "tokens from both the old and the new key were in flight"
    assert tally.ok > 50


@pytest.mark.parametrize("strategy", ["rolling", "bluegreen"])
def test_memory_sessions_baseline_logs_users_out(
    keyring: KeyringDir, jwks_url: str, tmp_path: Path, strategy: str
) -> None:
    env = {
        "SESSIONS": "memory",
        "SESSION_SECRETS": "proof-secret-0123456789",
        "JWKS_URL": jwks_url,
        "JWKS_CACHE_TTL": str(JWKS_TTL),
    }
    tally = rollout(env, keyring, tmp_path, strategy)
    cookie_users_out = sorted(u for u in tally.logged_out if u.startswith("c"))
    print(
        f"\n{strategy}, memory sessions (baseline): {tally.ok} ok, {tally.failed} failed, "
        f"{tally.unauthorized} x 401, {len(cookie_users_out)}/{USERS} cookie users logged out"
    )
    assert tally.failed == 0
    assert len(cookie_users_out) == USERS  # every session user was logged out at least once
    assert not any(u.startswith("t") for u in tally.logged_out)  # tokens are not in memory
