"""WSGI session middleware: `environ["zerodown.session"]` backed by a shared store.

    app = WSGISessionMiddleware(app, store=SQLiteSessionStore(), secrets=["new", "old"])

The session is saved when the application calls start_response, which is when frameworks have
finished the view. For Flask prefer `zerodown.sessions.flask.ZerodownSessionInterface`, which
makes `flask.session` itself the shared session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from zerodown.sessions.session import CookieOptions, SessionManager
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import SessionStore

ENVIRON_KEY = "zerodown.session"


class WSGISessionMiddleware:
    def __init__(
        self,
        app: Any,
        *,
        store: SessionStore,
        secrets: SecretKeyring | Sequence[str | bytes],
        cookie: CookieOptions | None = None,
    ):
        self.app = app
        keyring = secrets if isinstance(secrets, SecretKeyring) else SecretKeyring(secrets)
        self.manager = SessionManager(store, keyring, cookie=cookie)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        manager = self.manager
        session = manager.load(manager.cookie_value(environ.get("HTTP_COOKIE")))
        environ[ENVIRON_KEY] = session

        def start_with_cookie(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            set_cookie = manager.commit(session)
            if set_cookie is not None:
                headers = [*headers, ("Set-Cookie", set_cookie)]
            return start_response(status, headers, exc_info)

        body: Iterable[bytes] = self.app(environ, start_with_cookie)
        return body
