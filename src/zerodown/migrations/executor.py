"""Run planned actions against PostgreSQL without long locks.

- Every DDL statement runs under `lock_timeout` (default 500 ms): if it cannot get its lock in
  that time it gives up instead of queueing every reader and writer behind it, and is retried
  after a jittered, growing pause ("full jitter", as in the AWS Architecture Blog's "Exponential
  Backoff and Jitter").
- CREATE INDEX CONCURRENTLY cannot run in a transaction and leaves an INVALID index behind when
  it fails; that index is detected in pg_index, dropped CONCURRENTLY and built again.
- The backfill touches rows in primary-key order, `batch_size` rows per transaction, pausing
  `batch_delay` between batches; its cursor is committed with each batch, so a crashed start
  resumes after the last finished batch. It stops at the highest key seen once the triggers were
  in place: rows written after that were already filled by the triggers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerr

from .actions import Backfill, DBAction, MigrationError
from .schema import ident, literal

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    base_schema: str = "public"
    lock_timeout: float = 0.5
    retries: int = 30
    backoff: float = 0.05
    backoff_cap: float = 2.0
    batch_size: int = 1000
    batch_delay: float = 0.005
    max_batches: int | None = None  # stop (as if crashed) after this many batches: for tests


class BackfillInterrupted(MigrationError):
    """The backfill stopped on purpose (max_batches); running start again resumes it."""


@dataclass
class Stats:
    lock_retries: int = 0
    invalid_indexes_rebuilt: int = 0
    backfilled_rows: int = 0
    batches: int = 0
    events: list[str] = field(default_factory=list)


class Executor:
    def __init__(
        self, conn: psycopg.Connection[Any], options: Options, log: Callable[[str], None] | None
    ) -> None:
        self.conn = conn
        self.o = options
        self.log = log
        self.stats = Stats()

    def event(self, message: str) -> None:
        self.stats.events.append(message)
        if self.log is not None:
            self.log(message)

    # locks and retries ---------------------------------------------------------------------
    def _ms(self) -> str:
        return f"{max(1, round(self.o.lock_timeout * 1000))}ms"

    def with_retries(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.o.retries + 1):
            try:
                return fn()
            except (pgerr.LockNotAvailable, pgerr.DeadlockDetected) as e:
                if attempt >= self.o.retries:
                    raise MigrationError(
                        f"{what}: no lock within {self._ms()} after {attempt + 1} tries "
                        f"({e.sqlstate}); a long transaction holds it — see pg_stat_activity, "
                        "then run the command again"
                    ) from None
                delay = random.uniform(0, min(self.o.backoff_cap, self.o.backoff * 2**attempt))
                self.stats.lock_retries += 1
                self.event(
                    f"lock wait over {self._ms()} ({what}); retry {attempt + 1} in {delay:.2f}s"
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def transaction(
        self, what: str, actions: Iterable[DBAction], *, then: Callable[[], None] | None = None
    ) -> None:
        """Run transactional actions together, all under lock_timeout, retried as a whole."""
        todo = list(actions)

        def attempt() -> None:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL lock_timeout = '{self._ms()}'")
                for action in todo:
                    if action.skip_if and self.conn.execute(action.skip_if).fetchone()[0]:  # type: ignore[index]
                        continue
                    self.conn.execute(action.sql)
                if then is not None:
                    then()

        try:
            self.with_retries(what, attempt)
        except (pgerr.LockNotAvailable, pgerr.DeadlockDetected):
            raise
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MigrationError(
                f"{what}: {first}; fix the cause and run the same command again (it resumes "
                "where it stopped), or roll the migration back"
            ) from None

    def run(self, action: DBAction) -> None:
        if action.transactional:
            self.transaction(action.sql.split("\n", 1)[0][:80], [action])
        else:
            self.concurrently(action)

    def run_all(self, actions: Iterable[DBAction]) -> None:
        for action in actions:
            self.run(action)

    # CREATE / DROP INDEX CONCURRENTLY -------------------------------------------------------
    def _index_valid(self, name: str) -> bool | None:
        row = self.conn.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (self.o.base_schema, name),
        ).fetchone()
        return None if row is None else bool(row[0])

    def _drop_invalid(self, name: str) -> None:
        if self._index_valid(name) is False:
            self.event(f"index {name} is INVALID (an earlier build failed): dropping it")
            self.stats.invalid_indexes_rebuilt += 1
            self.conn.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {ident(self.o.base_schema)}.{ident(name)}"
            )

    def concurrently(self, action: DBAction) -> None:
        what = action.sql.split("\n", 1)[0][:80]

        def attempt() -> None:
            if action.index:
                self._drop_invalid(action.index)
                if self._index_valid(action.index):
                    return
            self.conn.execute(f"SET lock_timeout = '{self._ms()}'")
            try:
                self.conn.execute(action.sql)
            except (pgerr.LockNotAvailable, pgerr.DeadlockDetected):
                if action.index:
                    self._drop_invalid(action.index)
                raise
            except psycopg.Error as e:
                if action.index:
                    self._drop_invalid(action.index)
                raise MigrationError(f"{what} failed: {e}".strip()) from None
            finally:
                self.conn.execute("RESET lock_timeout")

        self.with_retries(what, attempt)

    # backfill ------------------------------------------------------------------------------
    def backfill(self, migration_id: int, b: Backfill) -> None:
        qt = f"{ident(self.o.base_schema)}.{ident(b.table)}"
        pk = ", ".join(ident(c) for c, _ in b.pk)
        pk_text = ", ".join(f"{ident(c)}::text" for c, _ in b.pk)
        pk_desc = ", ".join(f"{ident(c)} DESC" for c, _ in b.pk)
        params = ", ".join(f"%s::{typ}" for _, typ in b.pk)
        row = self.conn.execute(
            "SELECT cursor, upper, done FROM zerodown.backfills"
            " WHERE migration_id = %s AND table_name = %s",
            (migration_id, b.table),
        ).fetchone()
        cursor: list[str] | None
        upper: list[str] | None
        if row is None:
            top = self.conn.execute(
                f"SELECT ARRAY[{pk_text}] FROM {qt} ORDER BY {pk_desc} LIMIT 1"
            ).fetchone()
            upper = top[0] if top else None
            self.conn.execute(
                "INSERT INTO zerodown.backfills (migration_id, table_name, upper, done)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (migration_id, b.table, upper, upper is None),
            )
            cursor, done = None, upper is None
        else:
            cursor, upper, done = row
        if done:
            return
        self.event(
            f"backfill {b.table}: resuming after {cursor}" if cursor else f"backfill {b.table}"
        )
        join = " AND ".join(f"t.{ident(c)} = b.{ident(c)}" for c, _ in b.pk)
        first = ident(b.pk[0][0])
        self.conn.execute("SET zerodown.backfill = 'on'")
        try:
            while True:
                lower = f" AND ({pk}) > ({params})" if cursor else ""
                sql = (
                    f"WITH b AS MATERIALIZED (SELECT {pk} FROM {qt} WHERE ({pk}) <= ({params})"
                    f"{lower} ORDER BY {pk} LIMIT {int(self.o.batch_size)}),"
                    f" u AS (UPDATE {qt} AS t SET {first} = t.{first} FROM b WHERE {join}"
                    " RETURNING 1)"
                    f" SELECT (SELECT count(*) FROM u), (SELECT ARRAY[{pk_text}] FROM b"
                    f" ORDER BY {pk_desc} LIMIT 1)"
                )
                args = [*(upper or []), *(cursor or [])]
                result: list[Any] = []

                def batch(
                    sql: str = sql, args: list[Any] = args, result: list[Any] = result
                ) -> None:
                    result.clear()
                    count, last = self.conn.execute(sql, args).fetchone()  # type: ignore[misc]
                    self.conn.execute(
                        "UPDATE zerodown.backfills SET cursor = coalesce(%s, cursor),"
                        " rows = rows + %s, done = %s WHERE migration_id = %s AND table_name = %s",
                        (last, count, last is None, migration_id, b.table),
                    )
                    result.extend((count, last))

                self.transaction(f"backfill {b.table}", [], then=batch)
                count, last = result
                if last is None:
                    self.event(f"backfill {b.table}: done")
                    return
                cursor = last
                self.stats.backfilled_rows += count
                self.stats.batches += 1
                if self.o.max_batches is not None and self.stats.batches >= self.o.max_batches:
                    raise BackfillInterrupted(
                        f"backfill of {b.table} stopped after {self.stats.batches} batches "
                        "(max_batches); run start again to resume"
                    )
                if self.o.batch_delay:
                    time.sleep(self.o.batch_delay)
        finally:
            self.conn.execute("RESET zerodown.backfill")


def drop_schema_action(name: str) -> DBAction:
    return DBAction(
        f"DROP SCHEMA IF EXISTS {ident(name)} CASCADE",
        locks="none on tables (drops the version schema's views)",
    )


def schema_exists_sql(name: str) -> str:
    return f"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {literal(name)})"
