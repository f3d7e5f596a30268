"""The per-request session and the framework-neutral logic every middleware shares.

The cookie holds only a random session id, signed by the keyring; the data is in the store.
On each response the manager decides one of: save (data changed), touch (read only: slide the
idle deadline), delete (emptied: logout), nothing (no session at all). The cookie is re-sent on
every response that has a session, so its Max-Age slides too and a cookie signed by an older
secret is re-signed by the newest one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from zerodown.sessions.format import SessionFormatError, SessionRecord
from zerodown.sessions.signing import SecretKeyring
from zerodown.sessions.store import SessionStore

log = logging.getLogger("zerodown.sessions")


class Session(dict[str, Any]):
    """A dict that knows whether it changed. `request.session` in Starlette, Flask, WSGI."""

    def __init__(self, data: dict[str, Any] | None = None, *, sid: str | None = None):
        super().__init__(data or {})
        self.sid = sid
        self.new = sid is None
        self.modified = False
        self.accessed = False
        self.created_at: float | None = None
        self.extra: dict[str, Any] = {}
        self.regenerate_id = False

    def rotate_id(self) -> None:
        """Give the session a new id on this response (call it at login: stops fixation)."""
        self.regenerate_id = True
        self.modified = True

    def __setitem__(self, key: str, value: Any) -> None:
        self.modified = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.modified = True
        super().__delitem__(key)

    def clear(self) -> None:
        self.modified = True
        super().clear()

    def pop(self, key: str, *default: Any) -> Any:
        self.modified = True
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.modified = True
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.modified = True
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.modified = True
        super().update(*args, **kwargs)


@dataclass(frozen=True, slots=True)
class CookieOptions:
    name: str = "zd_session"
    path: str = "/"
    domain: str | None = None
    secure: bool = False
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"


class SessionManager:
    def __init__(
        self,
        store: SessionStore,
        keyring: SecretKeyring,
        *,
        cookie: CookieOptions | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.keyring = keyring
        self.cookie = cookie or CookieOptions()
        self.clock = clock

    def __repr__(self) -> str:
        return f"SessionManager(store={type(self.store).__name__}, cookie={self.cookie.name!r})"

    def cookie_value(self, cookie_header: str | None) -> str | None:
        """Our cookie's value from a Cookie: header (None if absent)."""
        if not cookie_header:
            return None
        for part in cookie_header.split(";"):
            name, eq, value = part.strip().partition("=")
            if eq and name == self.cookie.name:
                return value.strip().strip('"')
        return None

    def load(self, cookie_value: str | None) -> Session:
        if not cookie_value:
            return Session()
        unsigned = self.keyring.unsign(cookie_value)
        if unsigned is None:
            return Session()  # forged, truncated, or signed by a secret no longer listed
        try:
            record = self.store.get(unsigned.value)
        except SessionFormatError as exc:
            # Leave the stored document alone: the release that wrote it can still read it.
            log.warning("session unreadable by this release, starting a new one: %s", exc)
            return Session()
        if record is None:
            return Session()
        session = Session(record.data, sid=unsigned.value)
        session.created_at = record.created_at
        session.extra = record.extra
        return session

    def commit(self, session: Session) -> str | None:
        """Persist what the request did; returns a Set-Cookie value, or None for no header."""
        if session.sid is not None and session.modified and not session:
            self.store.delete(session.sid)
            return self._expired_cookie()
        if session.modified and session:
            sid = session.sid
            if sid is None or session.regenerate_id:
                if sid is not None:
                    self.store.delete(sid)
                sid = secrets.token_urlsafe(32)
            created = session.created_at if session.created_at is not None else self.clock()
            self.store.set(
                sid, SessionRecord(data=dict(session), created_at=created, extra=session.extra)
            )
            session.sid, session.created_at, session.modified = sid, created, False
            return self._cookie(sid)
        if session.sid is not None:
            self.store.touch(session.sid)
            return self._cookie(session.sid)
        return None

    def _attrs(self, max_age: int) -> str:
        c = self.cookie
        parts = [f"Path={c.path}", f"Max-Age={max_age}", f"SameSite={c.samesite.capitalize()}"]
        if c.domain:
            parts.append(f"Domain={c.domain}")
        if c.secure or c.samesite == "none":
            parts.append("Secure")
        if c.httponly:
            parts.append("HttpOnly")
        return "; ".join(parts)

    def _cookie(self, sid: str) -> str:
        max_age = int(self.store.idle_timeout)
        return f"{self.cookie.name}={self.keyring.sign(sid)}; {self._attrs(max_age)}"

    def _expired_cookie(self) -> str:
        return f"{self.cookie.name}=; {self._attrs(0)}"
