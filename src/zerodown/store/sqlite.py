"""The default state store: one SQLite file in `.zerodown/`, WAL mode, one writer (the controller).

Rows hold JSON documents of the core's frozen dataclasses (store/documents.py, shared with the
PostgreSQL store), so the schema stays small and the store never interprets them beyond the few
columns it indexes.

Every call either succeeds or raises StoreUnavailable within a few seconds: SQLite waits at most
BUSY_TIMEOUT for a lock another process holds, and a caller waits at most LOCK_WAIT for the
connection another thread of the controller is using. A held lock is an error the engine records
and retries, never a hang (the calls run on the controller's event loop).

Leader lease (LeaseStore, core/ports.py): the same rule as on PostgreSQL (store/leases.py), with
this machine's clock, which every controller of a SQLite file shares. A second controller started
on the same file is a standby: it writes nothing until the first one's lease runs out or its
process is gone.

Chosen by the spec's `state.url` scheme: `sqlite:///<path>` (relative to the spec's directory;
`sqlite:////<absolute path>` with four slashes), `create` is the registry's factory.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zerodown.core.errors import NotLeader, SpecError, StoreUnavailable
from zerodown.core.ports import ControllerSeen, Leadership, Lease
from zerodown.drivers import DriverContext
from zerodown.store.documents import DocumentStore, Statement
from zerodown.store.leases import claimed

BUSY_TIMEOUT = 1.0  # seconds SQLite waits for another process's lock before "database is locked"
LOCK_WAIT = 5.0  # seconds a call waits for the connection (held at most ~BUSY_TIMEOUT per call)

SCHEMA = """
CREATE TABLE IF NOT EXISTS status (service TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  id TEXT PRIMARY KEY, service TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revisions (
  service TEXT NOT NULL, number INTEGER NOT NULL, version TEXT NOT NULL, strategy TEXT NOT NULL,
  spec TEXT NOT NULL, created_at REAL NOT NULL, finished_at REAL, outcome TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '', PRIMARY KEY (service, number));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, at REAL NOT NULL,
  revision INTEGER, kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_service ON events (service, id);
CREATE TABLE IF NOT EXISTS leases (
  service TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL, since REAL NOT NULL,
  expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS controllers (
  service TEXT NOT NULL, id TEXT NOT NULL, url TEXT NOT NULL, seen_at REAL NOT NULL,
  PRIMARY KEY (service, id));
"""


def create(ctx: DriverContext) -> SqliteStore:
    return SqliteStore(sqlite_path(ctx.spec.state.url, base=ctx.spec_dir))


def sqlite_path(url: str, *, base: Path) -> str:
    """The file a `sqlite:///…` URL names (relative paths start at `base`)."""
    scheme, sep, rest = url.partition(":///")
    if scheme != "sqlite" or not sep or not rest:
        raise SpecError(
            f"{url!r} is not a SQLite URL: use sqlite:///<path> (relative to the spec's "
            "directory) or sqlite:////<absolute path>",
            field="state.url",
        )
    return rest if rest == ":memory:" else str(base / rest)


class SqliteStore(DocumentStore):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._fence: tuple[str, str, int | None] | None = None  # (service, holder, token)
        with self._using():
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(revisions)")}
            if "db_schema" not in columns:  # stores made before migrations were tied to rollouts
                self._db.execute("ALTER TABLE revisions ADD COLUMN db_schema TEXT")

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _using(self) -> Iterator[None]:
        """The connection, alone, with every SQLite failure turned into StoreUnavailable."""
        if not self._lock.acquire(timeout=LOCK_WAIT):
            raise StoreUnavailable(f"the state store {self.path} is busy (waited {LOCK_WAIT:g}s)")
        try:
            yield
        except sqlite3.Error as exc:
            hint = " (another process holds a lock on it)" if "locked" in str(exc) else ""
            raise StoreUnavailable(
                f"the state store {self.path} is unavailable: {exc}{hint}"
            ) from exc
        finally:
            self._lock.release()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._using():
            return self._db.execute(sql, args).fetchall()

    def _write(self, statements: list[Statement]) -> list[tuple[Any, ...]]:
        with self._using(), self._transaction():
            self._check_fence()
            rows: list[tuple[Any, ...]] = []
            for sql, args in statements:
                rows = self._db.execute(sql, args).fetchall()
            return rows

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):  # the failed COMMIT may have ended it
                self._db.execute("ROLLBACK")
            raise

    # leader lease -------------------------------------------------------------------------

    def _check_fence(self) -> None:
        """Inside a write's transaction (BEGIN IMMEDIATE holds the write lock, so no claim
        slips in before the commit): the fenced lease must still be ours and running."""
        if self._fence is None:
            return
        service, holder, token = self._fence
        if token is None:
            raise NotLeader(f"this controller ({holder}) is a standby: it writes nothing")
        row = self._db.execute(
            "SELECT 1 FROM leases WHERE service = ? AND holder = ? AND token = ?"
            " AND expires_at > ?",
            (service, holder, token, time.time()),
        ).fetchone()
        if row is None:
            raise NotLeader(f"{holder} no longer holds the lease of {service} (term {token})")

    def claim(
        self, service: str, holder: str, *, ttl: float, url: str = "", dead: str | None = None
    ) -> Lease | None:
        with self._using(), self._transaction():
            now = time.time()
            rows = self._db.execute(
                "SELECT holder, token, since, expires_at FROM leases WHERE service = ?",
                (service,),
            ).fetchall()
            current = Lease(*rows[0]) if rows else None
            lease = claimed(current, holder, now=now, ttl=ttl, dead=dead)
            if lease is not None:
                self._db.execute(
                    "INSERT INTO leases (service, holder, token, since, expires_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (service) DO UPDATE SET"
                    " holder = excluded.holder, token = excluded.token, since = excluded.since,"
                    " expires_at = excluded.expires_at",
                    (service, lease.holder, lease.token, lease.since, lease.expires_at),
                )
            self._db.execute(
                "INSERT INTO controllers (service, id, url, seen_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (service, id) DO UPDATE SET url = excluded.url,"
                " seen_at = excluded.seen_at",
                (service, holder, url, now),
            )
        return lease

    def fence(self, service: str, holder: str, token: int | None) -> None:
        self._fence = (service, holder, token)

    def release(self, service: str, holder: str) -> None:
        with self._using(), self._transaction():
            self._db.execute(
                "UPDATE leases SET expires_at = 0 WHERE service = ? AND holder = ?",
                (service, holder),
            )
            self._db.execute(
                "DELETE FROM controllers WHERE service = ? AND id = ?", (service, holder)
            )

    def leadership(self, service: str) -> Leadership:
        with self._using():
            now = time.time()
            lease = self._db.execute(
                "SELECT holder, token, since, expires_at FROM leases WHERE service = ?",
                (service,),
            ).fetchall()
            seen = self._db.execute(
                "SELECT id, url, seen_at FROM controllers WHERE service = ? ORDER BY id",
                (service,),
            ).fetchall()
        return Leadership(
            lease=Lease(*lease[0]) if lease else None,
            controllers=tuple(ControllerSeen(*row) for row in seen),
            now=now,
        )
