"""Server-side session stores: one interface, Redis for production, SQLite as the embedded default.

A session lives outside the process so that any instance of any release can serve its user: the
reason sessions survive a rolling deploy. Expiry is sliding: each `touch` (the middleware calls it
on every request that carries the session) pushes the idle deadline forward; an optional absolute
lifetime caps it. Deadlines are kept beside the document and checked with the store's clock, so
tests can drive expiry with a fake clock; Redis' own key TTL only collects the garbage.

The interface is synchronous (the Redis and SQLite clients are); the ASGI middleware runs it in a
worker thread so the event loop never waits on the store.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import redis

from zerodown.sessions.format import SessionRecord, decode, encode

Clock = Callable[[], float]


class SessionStore(Protocol):
    idle_timeout: float

    def get(self, sid: str) -> SessionRecord | None:
        """The session, or None when it is missing or expired."""

    def set(self, sid: str, record: SessionRecord) -> None:
        """Create or replace; the idle deadline restarts."""

    def touch(self, sid: str) -> None:
        """Push the idle deadline forward (sliding expiry)."""

    def delete(self, sid: str) -> None: ...

    def close(self) -> None: ...


class _Expiry:
    def __init__(self, idle_timeout: float, absolute_timeout: float | None, clock: Clock):
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be a positive number of seconds")
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.clock = clock

    def alive(self, record: SessionRecord, expires_at: float, now: float) -> bool:
        if now >= expires_at:
            return False
        return self.absolute_timeout is None or now < record.created_at + self.absolute_timeout


class MemorySessionStore(_Expiry):
    """Sessions in this process only: they die with it. The baseline that logs users out."""

    def __init__(
        self,
        *,
        idle_timeout: float = 1800,
        absolute_timeout: float | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(idle_timeout, absolute_timeout, clock)
        self._items: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> SessionRecord | None:
        with self._lock:
            item = self._items.get(sid)
        if item is None:
            return None
        record = decode(item[0])
        return record if self.alive(record, item[1], self.clock()) else None

    def set(self, sid: str, record: SessionRecord) -> None:
        text = encode(record)
        with self._lock:
            self._items[sid] = (text, self.clock() + self.idle_timeout)

    def touch(self, sid: str) -> None:
        with self._lock:
            if sid in self._items:
                self._items[sid] = (self._items[sid][0], self.clock() + self.idle_timeout)

    def delete(self, sid: str) -> None:
        with self._lock:
            self._items.pop(sid, None)

    def close(self) -> None:
        pass


class SQLiteSessionStore(_Expiry):
    """Sessions in a SQLite file: shared by every process on the machine, the embedded default.

    WAL mode lets readers run beside a writer, and busy_timeout makes concurrent writers from
    several instances wait instead of failing.
    """

    def __init__(
        self,
        path: str | Path = ".zerodown/sessions.sqlite3",
        *,
        idle_timeout: float = 1800,
        absolute_timeout: float | None = None,
        clock: Clock = time.time,
    ):
        super().__init__(idle_timeout, absolute_timeout, clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS zerodown_sessions ("
                " sid TEXT PRIMARY KEY, doc TEXT NOT NULL, expires_at REAL NOT NULL)"
            )
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS zerodown_sessions_expires"
                " ON zerodown_sessions (expires_at)"
            )

    def get(self, sid: str) -> SessionRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc, expires_at FROM zerodown_sessions WHERE sid = ?", (sid,)
            ).fetchone()
        if row is None:
            return None
        record = decode(row[0])
        return record if self.alive(record, row[1], self.clock()) else None

    def set(self, sid: str, record: SessionRecord) -> None:
        text = encode(record)
        now = self.clock()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO zerodown_sessions (sid, doc, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (sid) DO UPDATE SET doc = excluded.doc,"
                " expires_at = excluded.expires_at",
                (sid, text, now + self.idle_timeout),
            )
            # Garbage collection rides on writes; expired rows are never returned anyway.
            self._db.execute("DELETE FROM zerodown_sessions WHERE expires_at <= ?", (now,))

    def touch(self, sid: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE zerodown_sessions SET expires_at = ? WHERE sid = ?",
                (self.clock() + self.idle_timeout, sid),
            )

    def delete(self, sid: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM zerodown_sessions WHERE sid = ?", (sid,))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisSessionStore(_Expiry):
    """Sessions in Redis, one hash per session: `doc` (the JSON) and `exp` (idle deadline).

    `touch` writes only `exp`, so a request that merely reads the session can never overwrite a
    concurrent request's changes to `doc`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "zerodown:session:",
        idle_timeout: float = 1800,
        absolute_timeout: float | None = None,
        clock: Clock = time.time,
        client: redis.Redis | None = None,
    ):
        super().__init__(idle_timeout, absolute_timeout, clock)
        self.prefix = prefix
        self._own_client = client is None
        self._redis = client if client is not None else redis.Redis.from_url(url)

    def _key(self, sid: str) -> str:
        return self.prefix + sid

    def _gc_ttl_ms(self) -> int:
        # Redis drops the key a little after the deadline the clock decides on.
        return int((self.idle_timeout + 60) * 1000)

    def get(self, sid: str) -> SessionRecord | None:
        fields = self._redis.hmget(self._key(sid), ["doc", "exp"])
        doc, exp = fields[0], fields[1]
        if doc is None or exp is None:
            return None
        record = decode(doc)
        return record if self.alive(record, float(exp), self.clock()) else None

    def set(self, sid: str, record: SessionRecord) -> None:
        text = encode(record)
        key = self._key(sid)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"doc": text, "exp": repr(self.clock() + self.idle_timeout)})
            pipe.pexpire(key, self._gc_ttl_ms())
            pipe.execute()

    def touch(self, sid: str) -> None:
        key = self._key(sid)
        # If a logout deleted the key meanwhile, this leaves a hash without `doc`, which reads
        # as no session and is collected by the TTL: a touch never resurrects a session.
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "exp", repr(self.clock() + self.idle_timeout))
            pipe.pexpire(key, self._gc_ttl_ms())
            pipe.execute()

    def delete(self, sid: str) -> None:
        self._redis.delete(self._key(sid))

    def close(self) -> None:
        if self._own_client:
            self._redis.close()
