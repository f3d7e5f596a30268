"""The PostgreSQL state store (`state: {url: "postgresql://user@host/db"}`): what lets two
controllers, each on its own machine or process, share one service's state and lead in turn.

Same rows and semantics as the SQLite store (store/documents.py, shared by both; `save`
in one transaction), in the `zerodown` schema of the database the URL names, created
idempotently (under a transaction-scoped advisory lock, so two controllers starting together do
not race on CREATE). Every call returns or raises StoreUnavailable within seconds:

- connecting waits at most CONNECT_TIMEOUT; TCP keepalives and tcp_user_timeout cut a
  connection to a server that vanished instead of waiting on it for ever;
- the server ends any statement after STATEMENT_TIMEOUT and any wait for a lock after
  LOCK_TIMEOUT, and ends the session of a client that sits in an open transaction longer than
  IDLE_IN_TRANSACTION (a leader paused mid-write must not hold the lease row's lock);
- a caller waits at most LOCK_WAIT for the connection another thread of the controller uses;
- a broken connection is dropped and the next call connects again.

Leader lease (LeaseStore): the rule of store/leases.py, with the server's clock
(clock_timestamp()), so the controllers' own clocks never matter. `claim` locks the lease row
FOR UPDATE; the fence check of every write reads it FOR SHARE in the write's transaction, so a
takeover waits for a write under way to commit, and a write after a takeover fails (NotLeader).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from zerodown.core.errors import NotLeader, SpecError, StoreUnavailable
from zerodown.core.ports import ControllerSeen, Leadership, Lease
from zerodown.drivers import DriverContext
from zerodown.store.documents import DocumentStore, Statement
from zerodown.store.leases import claimed

CONNECT_TIMEOUT = 3  # seconds (libpq takes whole seconds)
STATEMENT_TIMEOUT_MS = 4000
LOCK_TIMEOUT_MS = 2000
IDLE_IN_TRANSACTION_MS = 3000
LOCK_WAIT = 8.0  # seconds a call waits for the connection another thread uses
SCHEMA_LOCK = 0x7A65726F  # "zero": serialises the CREATE statements of controllers starting at once

NOW = "EXTRACT(EPOCH FROM clock_timestamp())::float8"

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS zerodown;
CREATE TABLE IF NOT EXISTS zerodown.status (service TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS zerodown.instances (
  id TEXT PRIMARY KEY, service TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS instances_by_service ON zerodown.instances (service, id);
CREATE TABLE IF NOT EXISTS zerodown.revisions (
  service TEXT NOT NULL, number BIGINT NOT NULL, version TEXT NOT NULL, strategy TEXT NOT NULL,
  spec TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
  outcome TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', db_schema TEXT,
  PRIMARY KEY (service, number));
CREATE TABLE IF NOT EXISTS zerodown.events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, service TEXT NOT NULL,
  at DOUBLE PRECISION NOT NULL, revision BIGINT, kind TEXT NOT NULL, message TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_service ON zerodown.events (service, id);
CREATE TABLE IF NOT EXISTS zerodown.leases (
  service TEXT PRIMARY KEY, holder TEXT NOT NULL, token BIGINT NOT NULL,
  since DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS zerodown.controllers (
  service TEXT NOT NULL, id TEXT NOT NULL, url TEXT NOT NULL,
  seen_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (service, id));
"""


def create(ctx: DriverContext) -> PostgresStore:
    return PostgresStore(ctx.spec.state.url)


def connection_options(url: str) -> str:
    """The URL with the limits that keep every call bounded (ones the URL sets win)."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise SpecError(
            f"{url!r} is not a PostgreSQL URL ({exc}): write postgresql://user@host:5432/db",
            field="state.url",
        ) from None
    limits: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": 2,
        "keepalives_interval": 1,
        "keepalives_count": 3,
        "tcp_user_timeout": 5000,
        "application_name": "zerodown-controller",
        "options": (
            f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
            f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
        ),
    }
    return make_conninfo(url, **{k: v for k, v in limits.items() if k not in given})


def _redacted(url: str) -> str:
    """The URL as messages show it: without a password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL state store"
    host, db = parts.get("host", "localhost"), parts.get("dbname", "")
    return f"postgresql://{parts.get('user', '')}@{host}:{parts.get('port', 5432)}/{db}"


class PostgresStore(DocumentStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self.where = _redacted(url)
        self._conninfo = connection_options(url)
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = None
        self._fence: tuple[str, str, int | None] | None = None  # (service, holder, token)
        with self._using() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            db.execute(SCHEMA)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _using(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection (made again if it broke), alone, with every PostgreSQL failure
        turned into StoreUnavailable."""
        if not self._lock.acquire(timeout=LOCK_WAIT):
            raise StoreUnavailable(f"the state store {self.where} is busy (waited {LOCK_WAIT:g}s)")
        try:
            if self._db is None or self._db.closed or self._db.broken:
                self._db = psycopg.connect(self._conninfo, autocommit=True)
                # The shared document SQL (store/documents.py) names tables without a schema.
                self._db.execute("SET search_path TO zerodown")
            yield self._db
        except psycopg.Error as exc:
            if self._db is not None and (
                self._db.broken or isinstance(exc, psycopg.OperationalError)
            ):
                self._db.close()
                self._db = None  # the next call connects again
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"the state store {self.where} is unavailable: {reason}"
            ) from exc
        finally:
            self._lock.release()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._using() as db:
            return db.execute(_psycopg(sql), args).fetchall()

    def _write(self, statements: list[Statement]) -> list[tuple[Any, ...]]:
        with self._using() as db, db.transaction():
            self._check_fence(db)
            rows: list[tuple[Any, ...]] = []
            for sql, args in statements:
                cursor = db.execute(_psycopg(sql), args)
                rows = cursor.fetchall() if cursor.description else []
            return rows

    # leader lease -------------------------------------------------------------------------

    def _check_fence(self, db: psycopg.Connection[Any]) -> None:
        """Inside a write's transaction: the fenced lease must still be ours and running. FOR
        SHARE holds off a takeover (FOR UPDATE in `claim`) until this write has committed."""
        if self._fence is None:
            return
        service, holder, token = self._fence
        if token is None:
            raise NotLeader(f"this controller ({holder}) is a standby: it writes nothing")
        row = db.execute(
            "SELECT 1 FROM zerodown.leases WHERE service = %s AND holder = %s AND token = %s"
            f" AND expires_at > {NOW} FOR SHARE",
            (service, holder, token),
        ).fetchone()
        if row is None:
            raise NotLeader(f"{holder} no longer holds the lease of {service} (term {token})")

    def claim(
        self, service: str, holder: str, *, ttl: float, url: str = "", dead: str | None = None
    ) -> Lease | None:
        with self._using() as db, db.transaction():
            db.execute(
                "INSERT INTO zerodown.leases (service, holder, token, since, expires_at)"
                " VALUES (%s, '', 0, 0, 0) ON CONFLICT (service) DO NOTHING",
                (service,),
            )
            row = db.execute(
                f"SELECT holder, token, since, expires_at, {NOW} FROM zerodown.leases"
                " WHERE service = %s FOR UPDATE",
                (service,),
            ).fetchone()
            assert row is not None  # inserted above if it was missing
            current, now = Lease(row[0], int(row[1]), row[2], row[3]), float(row[4])
            lease = claimed(current, holder, now=now, ttl=ttl, dead=dead)
            if lease is not None:
                db.execute(
                    "UPDATE zerodown.leases SET holder = %s, token = %s, since = %s,"
                    " expires_at = %s WHERE service = %s",
                    (lease.holder, lease.token, lease.since, lease.expires_at, service),
                )
            db.execute(
                "INSERT INTO zerodown.controllers (service, id, url, seen_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (service, id) DO UPDATE SET"
                " url = excluded.url, seen_at = excluded.seen_at",
                (service, holder, url, now),
            )
        return lease

    def fence(self, service: str, holder: str, token: int | None) -> None:
        self._fence = (service, holder, token)

    def release(self, service: str, holder: str) -> None:
        with self._using() as db, db.transaction():
            db.execute(
                "UPDATE zerodown.leases SET expires_at = 0 WHERE service = %s AND holder = %s",
                (service, holder),
            )
            db.execute(
                "DELETE FROM zerodown.controllers WHERE service = %s AND id = %s",
                (service, holder),
            )

    def leadership(self, service: str) -> Leadership:
        with self._using() as db:
            lease = db.execute(
                f"SELECT holder, token, since, expires_at, {NOW} FROM zerodown.leases"
                " WHERE service = %s",
                (service,),
            ).fetchone()
            seen = db.execute(
                f"SELECT id, url, seen_at, {NOW} FROM zerodown.controllers WHERE service = %s"
                " ORDER BY id",
                (service,),
            ).fetchall()
        now = float(lease[4]) if lease else float(seen[0][3]) if seen else 0.0
        held = lease is not None and lease[0] != ""
        return Leadership(
            lease=Lease(lease[0], int(lease[1]), lease[2], lease[3]) if lease and held else None,
            controllers=tuple(ControllerSeen(i, u, s) for i, u, s, _ in seen),
            now=now,
        )


def _psycopg(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's `%s` (no statement has a literal ? or %)."""
    return sql.replace("?", "%s")
