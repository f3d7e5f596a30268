"""The default state store: one SQLite file in `.zerodown/`, WAL mode, one writer (the controller).

Rows hold JSON documents of the core's frozen dataclasses, so the schema stays small and the
store never interprets them beyond the few columns it indexes.

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
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from zerodown.core.errors import NotLeader, SpecError, StoreUnavailable
from zerodown.core.model import Event, EventRow, Instance, Revision, Rollout, ServiceStatus
from zerodown.core.ports import ControllerSeen, Leadership, Lease
from zerodown.drivers import DriverContext
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


class SqliteStore:
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

    def _write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._using(), self._transaction():
            self._check_fence()
            for sql, args in statements:
                self._db.execute(sql, args)

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

    # status -------------------------------------------------------------------------------

    def status(self, service: str) -> ServiceStatus:
        rows = self._rows("SELECT doc FROM status WHERE service = ?", service)
        return ServiceStatus.from_json(json.loads(rows[0][0])) if rows else ServiceStatus(service)

    def save(self, status: ServiceStatus, events: Sequence[EventRow] = ()) -> None:
        """The status, its rollout's revision row and the decision records, in one transaction."""
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (
                "INSERT INTO status (service, doc) VALUES (?, ?) "
                "ON CONFLICT (service) DO UPDATE SET doc = excluded.doc",
                (status.service, json.dumps(status.to_json())),
            )
        ]
        if status.rollout is not None:
            statements.append(_revision_update(status.service, status.rollout))
        self._write(statements + _event_inserts(status.service, events))

    def add_events(self, service: str, events: Sequence[EventRow]) -> None:
        """Decision-log entries that change no status (errors, probe reports, flag guards)."""
        self._write(_event_inserts(service, events))

    # instances ----------------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        rows = self._rows("SELECT doc FROM instances WHERE service = ? ORDER BY id", service)
        return [Instance.from_json(json.loads(doc)) for (doc,) in rows]

    def put_instance(self, service: str, instance: Instance) -> None:
        self._write(
            [
                (
                    "INSERT INTO instances (id, service, doc) VALUES (?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                    (instance.id, service, json.dumps(instance.to_json())),
                )
            ]
        )

    def delete_instance(self, instance_id: str) -> None:
        self._write([("DELETE FROM instances WHERE id = ?", (instance_id,))])

    # revisions and events -----------------------------------------------------------------

    def add_revision(
        self, service: str, *, version: str, strategy: str, spec: dict[str, Any], now: float
    ) -> int:
        with self._using(), self._transaction():
            self._check_fence()
            (last,) = self._db.execute(
                "SELECT COALESCE(MAX(number), 0) FROM revisions WHERE service = ?", (service,)
            ).fetchone()
            self._db.execute(
                "INSERT INTO revisions (service, number, version, strategy, spec, created_at,"
                " outcome) VALUES (?, ?, ?, ?, ?, ?, 'progressing')",
                (service, last + 1, version, strategy, json.dumps(spec), now),
            )
        return int(last) + 1

    def revisions(self, service: str) -> list[Revision]:
        rows = self._rows(
            "SELECT number, version, strategy, spec, created_at, finished_at, outcome, reason,"
            " db_schema FROM revisions WHERE service = ? ORDER BY number",
            service,
        )
        return [
            Revision(n, v, s, json.loads(spec), c, f, o, r, d)
            for n, v, s, spec, c, f, o, r, d in rows
        ]

    def revision(self, service: str, number: int) -> Revision | None:
        return next((r for r in self.revisions(service) if r.number == number), None)

    def set_revision_schema(self, service: str, number: int, schema: str) -> None:
        self._write(
            [
                (
                    "UPDATE revisions SET db_schema = ? WHERE service = ? AND number = ?",
                    (schema, service, number),
                )
            ]
        )

    def end_revision(self, service: str, rollout: Rollout) -> None:
        self._write([_revision_update(service, rollout)])

    def events(self, service: str, *, after: int = 0, limit: int = 200) -> list[Event]:
        rows = self._rows(
            "SELECT id, at, revision, kind, message FROM events WHERE service = ? AND id > ?"
            " ORDER BY id DESC LIMIT ?",
            service,
            after,
            limit,
        )
        return [Event(*row) for row in reversed(rows)]


def _event_inserts(service: str, events: Sequence[EventRow]) -> list[tuple[str, tuple[Any, ...]]]:
    return [
        (
            "INSERT INTO events (service, at, revision, kind, message) VALUES (?, ?, ?, ?, ?)",
            (service, at, rev, kind, message),
        )
        for at, rev, kind, message in events
    ]


def _revision_update(service: str, rollout: Rollout) -> tuple[str, tuple[Any, ...]]:
    return (
        "UPDATE revisions SET outcome = ?, reason = ?, finished_at = ?"
        " WHERE service = ? AND number = ?",
        (rollout.phase.value, rollout.reason, rollout.finished_at, service, rollout.revision),
    )
