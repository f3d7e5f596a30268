"""Sessions that survive deploys: a versioned session format in a shared store (Redis,
SQLite, memory), signed cookies with several active secrets, and middleware for ASGI, WSGI and
Flask. See docs/sessions.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerodown.lazy import exports

if TYPE_CHECKING:
    from zerodown.sessions.asgi import SessionMiddleware
    from zerodown.sessions.flask import ZerodownSessionInterface
    from zerodown.sessions.format import SessionFormatError
    from zerodown.sessions.session import CookieOptions, Session, SessionManager
    from zerodown.sessions.signing import SecretKeyring
    from zerodown.sessions.store import (
        MemorySessionStore,
        RedisSessionStore,
        SessionStore,
        SQLiteSessionStore,
    )
    from zerodown.sessions.wsgi import ENVIRON_KEY, WSGISessionMiddleware

# Public name -> the module that defines it, imported on first use (zerodown.lazy).
_WHERE = {
    "SessionMiddleware": "zerodown.sessions.asgi",
    "ENVIRON_KEY": "zerodown.sessions.wsgi",
    "WSGISessionMiddleware": "zerodown.sessions.wsgi",
    "ZerodownSessionInterface": "zerodown.sessions.flask",
    "CookieOptions": "zerodown.sessions.session",
    "Session": "zerodown.sessions.session",
    "SessionManager": "zerodown.sessions.session",
    "SecretKeyring": "zerodown.sessions.signing",
    "MemorySessionStore": "zerodown.sessions.store",
    "RedisSessionStore": "zerodown.sessions.store",
    "SQLiteSessionStore": "zerodown.sessions.store",
    "SessionStore": "zerodown.sessions.store",
    "SessionFormatError": "zerodown.sessions.format",
}

__all__ = [
    "ENVIRON_KEY",
    "CookieOptions",
    "MemorySessionStore",
    "RedisSessionStore",
    "SQLiteSessionStore",
    "SecretKeyring",
    "Session",
    "SessionFormatError",
    "SessionManager",
    "SessionMiddleware",
    "SessionStore",
    "WSGISessionMiddleware",
    "ZerodownSessionInterface",
]

__getattr__, __dir__ = exports(__name__, _WHERE)
