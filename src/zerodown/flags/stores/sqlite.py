"""Flag store in a SQLite file (the controller's own by default). Tables are prefixed so the file
can be shared with the controller's state."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from zerodown.flags.model import Flag
from zerodown.flags.stores import (
    AuditEntry,
    Clock,
    FlagStoreError,
    utc_now,
    with_usage,
)
from zerodown.flags.stores.sql import SqlFlagStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS zerodown_flags (key TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS zerodown_flag_usage (key TEXT PRIMARY KEY, last_evaluated_at TEXT);
CREATE TABLE IF NOT EXISTS zerodown_flag_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS zerodown_flag_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, key TEXT NOT NULL, before TEXT, after TEXT, note TEXT NOT NULL
);
INSERT OR IGNORE INTO zerodown_flag_meta (name, value) VALUES ('version', 0);
"""


class SqliteFlagStore(SqlFlagStore[sqlite3.Connection]):
    def __init__(self, path: str | Path, *, clock: Clock = utc_now, poll_interval: float = 0.05):
        self._clock = clock
        self._poll = poll_interval
        self._lock = threading.Lock()
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=10
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise FlagStoreError(f"cannot open the flag store {path}: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self) -> tuple[int, list[Flag]]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                version = self._db.execute(
                    "SELECT value FROM zerodown_flag_meta WHERE name='version'"
                ).fetchone()[0]
                rows = self._db.execute(
                    "SELECT f.doc, u.last_evaluated_at FROM zerodown_flags f "
                    "LEFT JOIN zerodown_flag_usage u ON u.key = f.key ORDER BY f.key"
                ).fetchall()
            finally:
                self._db.execute("COMMIT")
        return int(version), [with_usage(json.loads(doc), used) for doc, used in rows]

    def snapshot(self) -> tuple[int, list[Flag]]:
        return self._read()

    def list_flags(self) -> list[Flag]:
        return self._read()[1]

    def get_flag(self, key: str) -> Flag | None:
        with self._lock:
            row = self._db.execute(
                "SELECT f.doc, u.last_evaluated_at FROM zerodown_flags f "
                "LEFT JOIN zerodown_flag_usage u ON u.key = f.key WHERE f.key = ?",
                (key,),
            ).fetchone()
        return with_usage(json.loads(row[0]), row[1]) if row else None

    def version(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM zerodown_flag_meta WHERE name='version'"
            ).fetchone()
        return int(row[0])

    def _old(self, db: sqlite3.Connection, key: str) -> dict[str, object] | None:
        row = db.execute("SELECT doc FROM zerodown_flags WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _change(
        self,
        db: sqlite3.Connection,
        *,
        actor: str,
        action: str,
        key: str,
        before: dict[str, object] | None,
        after: dict[str, object] | None,
        note: str,
    ) -> None:
        if after is None:
            db.execute("DELETE FROM zerodown_flags WHERE key = ?", (key,))
            db.execute("DELETE FROM zerodown_flag_usage WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO zerodown_flags (key, doc) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET doc = excluded.doc",
                (key, json.dumps(after)),
            )
        db.execute("UPDATE zerodown_flag_meta SET value = value + 1 WHERE name = 'version'")
        db.execute(
            "INSERT INTO zerodown_flag_audit (at, actor, action, key, before, after, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self._clock().isoformat(),
                actor,
                action,
                key,
                json.dumps(before) if before is not None else None,
                json.dumps(after) if after is not None else None,
                note,
            ),
        )

    def audit(self, *, key: str | None = None, limit: int = 100) -> list[AuditEntry]:
        sql = "SELECT id, at, actor, action, key, before, after, note FROM zerodown_flag_audit"
        args: tuple[object, ...] = ()
        if key is not None:
            sql += " WHERE key = ?"
            args = (key,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [
            AuditEntry(
                id=r[0],
                at=r[1],
                actor=r[2],
                action=r[3],
                key=r[4],
                before=json.loads(r[5]) if r[5] else None,
                after=json.loads(r[6]) if r[6] else None,
                note=r[7],
            )
            for r in rows
        ]

    def mark_evaluated(self, keys: Iterable[str], when: datetime) -> None:
        rows = [(k, when.isoformat()) for k in keys]
        if not rows:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO zerodown_flag_usage (key, last_evaluated_at) "
                "SELECT ?1, ?2 WHERE EXISTS (SELECT 1 FROM zerodown_flags WHERE key = ?1) "
                "ON CONFLICT(key) DO UPDATE SET last_evaluated_at = "
                "max(last_evaluated_at, excluded.last_evaluated_at)",
                rows,
            )

    def wait_for_change(self, since: int, timeout: float) -> int:
        # Another process may write the same file, so poll the version rather than trust memory.
        deadline = time.monotonic() + timeout
        while True:
            current = self.version()
            if current != since or time.monotonic() >= deadline:
                return current
            time.sleep(min(self._poll, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        with self._lock:
            self._db.close()
