"""Logged-in simulated users through the router, and a workspace that runs the auth demo app.

`LoggedInUsers` runs in a thread of its own (its own asyncio loop) so the test can drive the
real CLI meanwhile. Half the users carry a session cookie, half a bearer token signed from the
workspace's keyring; every request is counted. A 401 is a logout: the user logs in again, as a
person would. The load stops by itself after `max_seconds` or `max_requests`.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import zerodown.demo.authapp as authapp
from support.workspace import Workspace, base_spec
from zerodown.keys.tokens import TokenSigner, unverified_header

APP = Path(authapp.__file__)
JWKS_TTL = "2s"  # the keyring's jwks_cache_ttl: a rotated key signs 2 s after it is published
SECRET = "deploy-proof-secret-0123456789"
USERS = 6  # of each kind: cookie users and token users


@dataclass(frozen=True)
class Hit:
    at: float
    kind: str  # "cookie" | "token"
    user: str
    status: int  # 0: no response
    version: str
    kid: str = ""
    error: str = ""


@dataclass
class Tally:
    hits: list[Hit] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(1 for h in self.hits if h.status == 200)

    @property
    def failed(self) -> list[Hit]:
        """No response, or a 5xx: what a user sees as an outage."""
        return [h for h in self.hits if h.status == 0 or h.status >= 500]

    @property
    def logouts(self) -> list[Hit]:
        return [h for h in self.hits if h.status == 401]

    def users_logged_out(self, kind: str) -> set[str]:
        return {h.user for h in self.logouts if h.kind == kind}

    def kids(self) -> set[str]:
        return {h.kid for h in self.hits if h.kid and h.status == 200}

    def versions(self, since: float = 0.0) -> Counter[str]:
        return Counter(h.version for h in self.hits if h.at >= since and h.status == 200)

    def other(self) -> list[Hit]:
        """Answers that are neither 200, 401 nor a failure: a bug in the test or the app."""
        return [h for h in self.hits if h.status not in (0, 200, 401) and h.status < 500]

    def summary(self) -> str:
        return (
            f"{len(self.hits)} requests, {self.ok} ok, {len(self.failed)} failed, "
            f"{len(self.logouts)} x 401; session users logged out: "
            f"{len(self.users_logged_out('cookie'))}, token users logged out: "
            f"{len(self.users_logged_out('token'))}"
        )


class LoggedInUsers:
    """`users` cookie users and `users` token users, each sending a request every `think` s."""

    def __init__(
        self,
        base_url: str,
        keys_dir: Path,
        *,
        users: int = USERS,
        think: float = 0.03,
        max_seconds: float = 60,
        max_requests: int = 40_000,
    ):
        self.base_url = base_url.rstrip("/")
        self.signer = TokenSigner(keys_dir)
        self.users = users
        self.think = think
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.tally = Tally()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logged-in-users", daemon=True)
        self._crash: BaseException | None = None

    def __enter__(self) -> LoggedInUsers:
        self._thread.start()
        if not self._started.wait(20):
            self._stop.set()
            raise AssertionError("the simulated users did not log in within 20 s")
        if self._crash is not None:
            raise self._crash
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._crash is not None and exc[0] is None:
            raise self._crash

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread in __exit__
            self._crash = exc
            self._started.set()

    def _done(self, deadline: float) -> bool:
        return (
            self._stop.is_set()
            or time.monotonic() > deadline
            or len(self.tally.hits) >= self.max_requests
        )

    async def _main(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        clients = [httpx.AsyncClient(timeout=10, limits=limits) for _ in range(2 * self.users)]
        try:
            cookie = clients[: self.users]
            token = clients[self.users :]
            for i, client in enumerate(cookie):
                await self._login(client, f"c{i}")
            self._started.set()
            await asyncio.gather(
                *(self._cookie_user(c, f"c{i}", deadline) for i, c in enumerate(cookie)),
                *(self._token_user(c, f"t{i}", deadline) for i, c in enumerate(token)),
            )
        finally:
            for client in clients:
                await client.aclose()

    async def _login(self, client: httpx.AsyncClient, name: str) -> None:
        r = await client.post(f"{self.base_url}/login", params={"user": name})
        if r.status_code != 200:
            raise AssertionError(f"login of {name} answered {r.status_code}: {r.text}")

    async def _cookie_user(self, client: httpx.AsyncClient, name: str, deadline: float) -> None:
        while not self._done(deadline):
            hit = await self._get(client, "/me", {}, "cookie", name, "")
            if hit.status == 401:
                try:
                    await self._login(client, name)
                except (httpx.HTTPError, AssertionError) as exc:
                    self._record(Hit(time.time(), "cookie", name, 0, "", error=f"login: {exc!r}"))
            await asyncio.sleep(self.think)

    async def _token_user(self, client: httpx.AsyncClient, name: str, deadline: float) -> None:
        token, issued = "", 0.0
        while not self._done(deadline):
            if time.monotonic() - issued > 0.3:  # clients refresh their tokens now and then
                token, issued = self.signer.sign({"sub": name}, lifetime=60), time.monotonic()
            kid = str(unverified_header(token)["kid"])
            headers = {"authorization": f"Bearer {token}"}
            await self._get(client, "/api/me", headers, "token", name, kid)
            await asyncio.sleep(self.think)

    async def _get(
        self,
        client: httpx.AsyncClient,
        path: str,
        headers: dict[str, str],
        kind: str,
        name: str,
        kid: str,
    ) -> Hit:
        at = time.time()
        try:
            r = await client.get(self.base_url + path, headers=headers)
        except httpx.HTTPError as exc:
            return self._record(Hit(at, kind, name, 0, "", kid, repr(exc)))
        try:
            version = str(r.json().get("version", ""))
        except ValueError:
            version = ""
        error = "" if r.status_code == 200 else r.text[:300]
        return self._record(Hit(at, kind, name, r.status_code, version, kid, error))

    def _record(self, hit: Hit) -> Hit:
        self.tally.hits.append(hit)  # list.append is atomic; only this thread writes
        return hit


# --- the workspace ----------------------------------------------------------------------------


def auth_spec(
    port: int,
    *,
    sessions: str,
    redis_url: str | None = None,
    prefix: str = "",
    instances: int = 2,
    strategy: dict[str, Any] | None = None,
    compat: bool = True,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = {
        "SESSIONS": sessions,
        "SESSION_SECRETS": SECRET,
        # The controller serves the keyring's JWK set; its port is only known once it runs.
        "JWKS_URL": "{controller}/.well-known/jwks.json",
        "JWKS_CACHE_TTL": "2",  # at most the keyring's jwks_cache_ttl
        **(extra_env or {}),
    }
    if redis_url is not None:
        env |= {"REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    spec = base_spec(
        port,
        instances=instances,
        strategy=strategy or {"rolling": {"max_surge": 1, "max_unavailable": 0}},
    )
    # authapp imports Starlette, redis and joserfc: on a busy 2-core machine its start takes
    # seconds, more than base_spec's 3 s startup allowance.
    spec["probes"]["startup"] = {"http": "/healthz", "period": "200ms", "failure_threshold": 100}
    spec["run"] = {
        "command": [sys.executable, str(APP), "{port}", "{version}"],
        "env": env,
        "drain": "1s",
        "stop_timeout": "5s",
    }
    if compat:
        spec["compat"] = {
            "session": {"login": "POST /login", "request": "GET /me", "expect": {"status": 200}},
            "token": {"request": "GET /api/me", "expect": {"status": 200}},
        }
    return spec


def keys(ws: Workspace, *args: str) -> str:
    """`zerodown keys …` in the workspace (on its .zerodown/keys, which the controller serves)."""
    result = subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ws.root,
    )
    if result.returncode != 0:
        raise AssertionError(f"zerodown keys {' '.join(args)}: {result.stdout}{result.stderr}")
    return result.stdout


def init_keys(ws: Workspace) -> Path:
    keys(ws, "init", "--jwks-cache", JWKS_TTL, "--max-token-lifetime", "5m", "--clock-skew", "1s")
    return ws.root / ".zerodown" / "keys"


def key_times(ws: Workspace) -> list[dict[str, Any]]:
    doc: list[dict[str, Any]] = json.loads(keys(ws, "list", "--json"))
    return doc


class Background:
    """A `zerodown` command in the background, so the test can act while it runs."""

    def __init__(self, ws: Workspace, *args: str, with_spec: bool = True):
        self.args = args
        spec = ["-f", str(ws.spec_file)] if with_spec else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zerodown.cli.main", *args, *spec],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ws.root,
        )

    def wait(self, timeout: float = 90) -> tuple[int, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise AssertionError(f"zerodown {' '.join(self.args)} ran over {timeout} s") from None
        return self.proc.returncode, out + err
