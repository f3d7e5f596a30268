"""ASGI session middleware (Starlette, FastAPI): `request.session` backed by a shared store.

    app.add_middleware(SessionMiddleware, store=RedisSessionStore(url), secrets=["new", "old"])

It puts the session in `scope["session"]`, which is where Starlette's `request.session` looks, so
application code is the same as with Starlette's cookie-only SessionMiddleware.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from zerodown.sessions.session import CookieOptions, SessionManager
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import MemorySessionStore, SessionStore

ASGIApp = Any


class SessionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: SessionStore,
        secrets: SecretKeyring | Sequence[str | bytes],
        cookie: CookieOptions | None = None,
    ):
        self.app = app
        keyring = secrets if isinstance(secrets, SecretKeyring) else SecretKeyring(secrets)
        self.manager = SessionManager(store, keyring, cookie=cookie)
        # The in-process store never blocks; the others do I/O, kept off the event loop.
        self._inline = isinstance(store, MemorySessionStore)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return fn(*args) if self._inline else await asyncio.to_thread(fn, *args)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = None
        for name, value in scope.get("headers", ()):
            if name == b"cookie":
                header = value.decode("latin-1")
                break
        manager = self.manager
        session = await self._run(manager.load, manager.cookie_value(header))
        scope["session"] = session
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                set_cookie = await self._run(manager.commit, session)
                if set_cookie is not None:
                    headers = list(message.get("headers", ()))
                    headers.append((b"set-cookie", set_cookie.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
