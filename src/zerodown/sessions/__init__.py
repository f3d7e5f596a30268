"""Sessions that survive deploys: a versioned session format in a shared store (Redis,
SQLite, memory), signed cookies with several active secrets, and middleware for ASGI, WSGI and
Flask. See docs/sessions.md."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

# Public name -> the module that defines it. Imported on first use, so that `import
# zerodown.flags.evaluate` (pure) does not pull in redis, httpx or fastapi.
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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
