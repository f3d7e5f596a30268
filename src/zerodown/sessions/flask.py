"""Flask: make `flask.session` the shared, server-side session.

    from zerodown.sessions.flask import ZerodownSessionInterface
    app.session_interface = ZerodownSessionInterface(store=RedisSessionStore(url),
                                                     secrets=["new-secret", "old-secret"])

Flask is not a dependency of zerodown; this module imports it only when used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask.sessions import SessionInterface, SessionMixin

from zerodown.sessions.session import CookieOptions, Session, SessionManager
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import SessionStore


class FlaskSession(Session, SessionMixin):
    pass


class ZerodownSessionInterface(SessionInterface):
    def __init__(
        self,
        *,
        store: SessionStore,
        secrets: SecretKeyring | Sequence[str | bytes],
        cookie: CookieOptions | None = None,
    ):
        keyring = secrets if isinstance(secrets, SecretKeyring) else SecretKeyring(secrets)
        self.manager = SessionManager(store, keyring, cookie=cookie)

    def open_session(self, app: Any, request: Any) -> FlaskSession:
        loaded = self.manager.load(request.cookies.get(self.manager.cookie.name))
        session = FlaskSession(dict(loaded), sid=loaded.sid)
        session.created_at, session.extra = loaded.created_at, loaded.extra
        return session

    def save_session(self, app: Any, session: Any, response: Any) -> None:
        set_cookie = self.manager.commit(session)
        if set_cookie is not None:
            response.headers.add("Set-Cookie", set_cookie)
            response.vary.add("Cookie")
