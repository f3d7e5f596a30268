"""Flag store in PostgreSQL (psycopg 3). Tables carry a prefix so several stores (or tests) can
share a database; a version row, locked during each change, orders writers. Each change also
sends NOTIFY on `{prefix}flag_changes`; readers waiting for a change LISTEN on one connection per
store (started on first wait), and fall back to polling while that connection is down."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from zerodown.flags.model import Flag
from zerodown.flags.stores import (
    AuditEntry,
    Clock,
    FlagStoreError,
    utc_now,
    with_usage,
)
from zerodown.flags.stores.sql import SqlFlagStore

_PREFIX_RE = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")


class PostgresFlagStore(SqlFlagStore[psycopg.Connection[Any]]):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "zerodown_",
        clock: Clock = utc_now,
        poll_interval: float = 0.1,
    ):
        if not _PREFIX_RE.match(prefix):
            raise FlagStoreError(f"table prefix {prefix!r}: use lower-case letters, digits and _")
        self._clock = clock
        self._poll = poll_interval
        self._lock = threading.Lock()
        self._url = url
        self._channel = f"{prefix}flag_changes"
        self._cond = threading.Condition()
        self._notifications = 0
        self._listening = False
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()
        p = prefix
        self._t = {
            "flags": f"{p}flags",
            "usage": f"{p}flag_usage",
            "meta": f"{p}flag_meta",
            "audit": f"{p}flag_audit",
        }
        try:
            self._conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            raise FlagStoreError(f"cannot connect to PostgreSQL for flags: {e}") from e
        t = self._t
        with self._lock, self._conn.transaction():
            # Two stores starting at once must not race on CREATE TABLE.
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (p + "flag_schema",))
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t['flags']} (key text PRIMARY KEY, doc jsonb NOT NULL)"
            )
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t['usage']} "
                "(key text PRIMARY KEY, last_evaluated_at timestamptz NOT NULL)"
            )
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t['meta']} (id int PRIMARY KEY, version bigint NOT NULL)"
            )
            self._conn.execute(
                f"INSERT INTO {t['meta']} (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING"
            )
            self._conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t['audit']} (id bigserial PRIMARY KEY, "
                "at timestamptz NOT NULL, actor text NOT NULL, action text NOT NULL, "
                "key text NOT NULL, before jsonb, after jsonb, note text NOT NULL)"
            )

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            try:
                with self._conn.transaction():
                    yield self._conn
            except psycopg.OperationalError as e:
                raise FlagStoreError(f"PostgreSQL flag store: {e}") from e

    def snapshot(self) -> tuple[int, list[Flag]]:
        t = self._t
        with self._tx() as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            version = c.execute(f"SELECT version FROM {t['meta']} WHERE id = 1").fetchone()
            rows = c.execute(
                f"SELECT f.doc, u.last_evaluated_at FROM {t['flags']} f "
                f"LEFT JOIN {t['usage']} u ON u.key = f.key ORDER BY f.key"
            ).fetchall()
        assert version is not None
        return int(version[0]), [
            with_usage(doc, used.isoformat() if used else None) for doc, used in rows
        ]

    def list_flags(self) -> list[Flag]:
        return self.snapshot()[1]

    def get_flag(self, key: str) -> Flag | None:
        t = self._t
        with self._tx() as c:
            row = c.execute(
                f"SELECT f.doc, u.last_evaluated_at FROM {t['flags']} f "
                f"LEFT JOIN {t['usage']} u ON u.key = f.key WHERE f.key = %s",
                (key,),
            ).fetchone()
        if row is None:
            return None
        return with_usage(row[0], row[1].isoformat() if row[1] else None)

    def version(self) -> int:
        with self._tx() as c:
            row = c.execute(f"SELECT version FROM {self._t['meta']} WHERE id = 1").fetchone()
        assert row is not None
        return int(row[0])

    def _change(
        self,
        c: psycopg.Connection[Any],
        *,
        actor: str,
        action: str,
        key: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        note: str,
    ) -> None:
        t = self._t
        if after is None:
            c.execute(f"DELETE FROM {t['flags']} WHERE key = %s", (key,))
            c.execute(f"DELETE FROM {t['usage']} WHERE key = %s", (key,))
        else:
            c.execute(
                f"INSERT INTO {t['flags']} (key, doc) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET doc = excluded.doc",
                (key, Jsonb(after)),
            )
        c.execute(f"UPDATE {t['meta']} SET version = version + 1 WHERE id = 1")
        c.execute("SELECT pg_notify(%s, '')", (self._channel,))  # delivered at commit
        c.execute(
            f"INSERT INTO {t['audit']} (at, actor, action, key, before, after, note) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                self._clock(),
                actor,
                action,
                key,
                Jsonb(before) if before is not None else None,
                Jsonb(after) if after is not None else None,
                note,
            ),
        )

    def _old(self, c: psycopg.Connection[Any], key: str) -> dict[str, Any] | None:
        # Lock the version row first: writers queue here, so read-modify-write is safe.
        c.execute(f"SELECT version FROM {self._t['meta']} WHERE id = 1 FOR UPDATE")
        row = c.execute(f"SELECT doc FROM {self._t['flags']} WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def audit(self, *, key: str | None = None, limit: int = 100) -> list[AuditEntry]:
        sql = f"SELECT id, at, actor, action, key, before, after, note FROM {self._t['audit']}"
        args: list[Any] = []
        if key is not None:
            sql += " WHERE key = %s"
            args.append(key)
        sql += " ORDER BY id DESC LIMIT %s"
        args.append(limit)
        with self._tx() as c:
            rows = c.execute(sql, args).fetchall()
        return [
            AuditEntry(
                id=r[0],
                at=r[1],
                actor=r[2],
                action=r[3],
                key=r[4],
                before=r[5],
                after=r[6],
                note=r[7],
            )
            for r in rows
        ]

    def mark_evaluated(self, keys: Iterable[str], when: datetime) -> None:
        rows = [(k, when) for k in keys]
        if not rows:
            return
        t = self._t
        with self._tx() as c, c.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {t['usage']} (key, last_evaluated_at) "
                f"SELECT %s, %s WHERE EXISTS (SELECT 1 FROM {t['flags']} f WHERE f.key = %s) "
                "ON CONFLICT (key) DO UPDATE SET last_evaluated_at = "
                f"greatest({t['usage']}.last_evaluated_at, excluded.last_evaluated_at)",
                [(k, w, k) for k, w in rows],
            )

    def wait_for_change(self, since: int, timeout: float) -> int:
        self._start_listener()
        deadline = time.monotonic() + timeout
        with self._cond:
            seen = self._notifications
        current = self.version()
        while current == since:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            with self._cond:
                if self._listening:
                    # Woken by NOTIFY (or the timeout); counted before reading the version, so a
                    # change between the two is not missed.
                    if self._notifications == seen:
                        self._cond.wait(left)
                    seen = self._notifications
                else:
                    self._cond.wait(min(self._poll, left))
            current = self.version()
        return current

    def _start_listener(self) -> None:
        with self._cond:
            if self._listener is not None or self._closing.is_set():
                return
            self._listener = threading.Thread(
                target=self._listen, name="zerodown-flags-pg-listen", daemon=True
            )
            self._listener.start()

    def _listen(self) -> None:
        while not self._closing.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {self._channel}")
                    with self._cond:
                        self._listening = True
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            with self._cond:
                                self._notifications += 1
                                self._cond.notify_all()
            except psycopg.Error:
                pass  # polled meanwhile; connect again after a pause
            with self._cond:
                self._listening = False
                self._cond.notify_all()
            self._closing.wait(1.0)

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join(5)
        with self._lock:
            self._conn.close()
