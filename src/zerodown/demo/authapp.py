"""A small logged-in app for the session and key-rotation proofs.

    python authapp.py PORT VERSION

Environment:
    SESSIONS          redis | sqlite | memory (memory: the baseline that logs users out on deploy)
    REDIS_URL         for SESSIONS=redis (default redis://127.0.0.1:6379/0)
    REDIS_PREFIX      key prefix in Redis (default zerodown:demo:session:)
    SESSION_DB        for SESSIONS=sqlite (default .zerodown/demo-sessions.sqlite3)
    SESSION_SECRETS   cookie signing secrets, newest first, comma-separated
    JWKS_URL          where /api/me finds the public keys of bearer tokens. `{controller}` in it
                      stands for the URL of the running zerodown controller (read from
                      $ZERODOWN_STATE_DIR/controller.json at start), whose port an app's spec
                      cannot know in advance: JWKS_URL={controller}/.well-known/jwks.json
    JWKS_CACHE_TTL    seconds the JWK set is cached (default 300)
    AUTHAPP_REJECT_OLD_SESSIONS_VERSIONS
                      versions (comma-separated) that sign and verify session cookies with a
                      secret of their own instead of SESSION_SECRETS: a release that logs every
                      user out, for the deploy-time compat check to catch

Routes: POST /login?user=NAME, GET /me (session cookie), GET /api/me (Authorization: Bearer),
POST /logout, GET /work?ms=N (takes N ms), GET /healthz, GET /ready. uvicorn handles SIGTERM by closing the listener and
finishing the requests in flight before it exits.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from zerodown.keys.tokens import JWKSUnavailable, JWKSVerifier, TokenError
from zerodown.sessions.asgi import SessionMiddleware
from zerodown.sessions.session import Session
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import (
    MemorySessionStore,
    RedisSessionStore,
    SessionStore,
    SQLiteSessionStore,
)

_DEMO_SECRET = "zerodown-demo-secret-change-me"


def make_store(env: Mapping[str, str]) -> SessionStore:
    kind = env.get("SESSIONS", "sqlite")
    if kind == "memory":
        return MemorySessionStore()
    if kind == "redis":
        return RedisSessionStore(
            env.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            prefix=env.get("REDIS_PREFIX", "zerodown:demo:session:"),
        )
    if kind == "sqlite":
        return SQLiteSessionStore(env.get("SESSION_DB", ".zerodown/demo-sessions.sqlite3"))
    raise SystemExit(f"SESSIONS={kind!r}: use redis, sqlite or memory")


def controller_url(env: Mapping[str, str]) -> str:
    """The running controller's base URL, from the state directory zerodown gives instances."""
    state = env.get("ZERODOWN_STATE_DIR")
    if not state:
        raise SystemExit(
            "JWKS_URL uses {controller} but ZERODOWN_STATE_DIR is not set: run the app under "
            "zerodown, or give JWKS_URL in full"
        )
    path = Path(state) / "controller.json"
    try:
        url = json.loads(path.read_text())["url"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"JWKS_URL uses {{controller}} but {path} is unreadable: {exc}") from None
    parts = urlsplit(str(url))
    # The JWK set decides which tokens are accepted: take it only from a loopback controller.
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit(f"{path}: controller URL {url!r} is not a loopback http:// URL")
    return str(url).rstrip("/")


def jwks_url_from(env: Mapping[str, str]) -> str | None:
    url = env.get("JWKS_URL")
    if url and "{controller}" in url:
        url = url.replace("{controller}", controller_url(env))
    return url or None


def session_secrets(version: str, env: Mapping[str, str]) -> list[str]:
    secrets = [s.strip() for s in env.get("SESSION_SECRETS", _DEMO_SECRET).split(",") if s.strip()]
    rejecting = {v.strip() for v in env.get("AUTHAPP_REJECT_OLD_SESSIONS_VERSIONS", "").split(",")}
    if version in rejecting:
        # The mistake this stands for: a release that swaps the cookie secret without keeping
        # the old one as a fallback. Every cookie the old release signed stops verifying.
        return [f"{secrets[0]}-without-fallback-{version}"]
    return secrets


def make_app(version: str, env: Mapping[str, str] = os.environ) -> Starlette:
    store = make_store(env)
    secrets = session_secrets(version, env)
    jwks_url = jwks_url_from(env)
    verifier = (
        JWKSVerifier(jwks_url, cache_ttl=float(env.get("JWKS_CACHE_TTL", "300")))
        if jwks_url
        else None
    )

    async def login(request: Request) -> JSONResponse:
        user = request.query_params.get("user", "demo")
        session: Session = request.session  # type: ignore[assignment]  # ours, not a plain dict
        session["user"] = user
        session.rotate_id()
        return JSONResponse({"user": user, "version": version})

    async def me(request: Request) -> JSONResponse:
        user = request.session.get("user")
        if user is None:
            return JSONResponse({"error": "not logged in", "version": version}, status_code=401)
        return JSONResponse({"user": user, "version": version})

    async def api_me(request: Request) -> JSONResponse:
        if verifier is None:
            return JSONResponse({"error": "JWKS_URL is not set"}, status_code=503)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse({"error": "send Authorization: Bearer <token>"}, status_code=401)
        try:
            claims = await verifier.averify(token.strip())
        except JWKSUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        except TokenError as exc:
            return JSONResponse({"error": str(exc), "version": version}, status_code=401)
        return JSONResponse({"sub": claims.get("sub"), "version": version})

    async def logout(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({"ok": True})

    async def work(request: Request) -> JSONResponse:
        # A request that takes a while: shows in-flight requests finishing after SIGTERM.
        await asyncio.sleep(min(float(request.query_params.get("ms", "100")), 30_000) / 1000)
        return JSONResponse({"done": True, "version": version})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "version": version})

    async def ready(request: Request) -> JSONResponse:
        return JSONResponse({"ready": True, "version": version})

    app = Starlette(
        routes=[
            Route("/login", login, methods=["POST"]),
            Route("/me", me),
            Route("/api/me", api_me),
            Route("/logout", logout, methods=["POST"]),
            Route("/work", work),
            Route("/healthz", healthz),
            Route("/ready", ready),
        ]
    )
    app.add_middleware(SessionMiddleware, store=store, secrets=SecretKeyring(secrets))
    return app


def main(argv: list[str]) -> int:
    if len(argv) != 3 or not argv[1].isdigit():
        print("usage: python authapp.py PORT VERSION", file=sys.stderr)
        return 2
    import uvicorn

    app: Any = make_app(argv[2])
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(argv[1]),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=30,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
