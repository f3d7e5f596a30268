"""Run one table's online schema change on MySQL/MariaDB: shadow, triggers, copy, swap.

The steps and their pitfalls (learned from pt-online-schema-change's and gh-ost's documentation;
the code is zerodown's own):

- Shadow `_zd_<t>_new`: `CREATE TABLE … LIKE` then one `ALTER TABLE` on the empty copy (instant).
- Triggers on the original, AFTER INSERT/UPDATE/DELETE, `REPLACE`/`DELETE IGNORE` into the shadow:
  every write the apps make during the copy reaches the shadow in the same transaction. A table
  that has triggers or foreign keys is refused (plan.py): ours would run beside theirs, and a
  swap leaves foreign keys pointing at the old table.
- Copy in primary-key order up to the highest key present once the triggers were in place (rows
  after it were written by the triggers), `INSERT IGNORE … SELECT … LOCK IN SHARE MODE`: a row a
  trigger already wrote is newer than what the copy read, so the copy's is dropped. IGNORE also
  turns conversion errors into warnings, so each batch's warnings are read and any but a
  duplicate key stops the change (a type change whose values do not fit). The cursor is
  committed with each batch: a killed start resumes after the last batch.
- Every statement runs with short `lock_wait_timeout` (metadata locks: DDL, triggers, RENAME)
  and `innodb_lock_wait_timeout` (row locks: the copy) and is retried after a jittered, growing
  pause when it times out or is chosen as a deadlock victim, so the apps' statements never queue
  long behind ours.
- Swap: one `RENAME TABLE t TO _zd_t_old, _zd_t_new TO t` — atomic, no moment without `t`. The
  old table is kept until complete.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..actions import MigrationError
from .plan import TableChange, q

T = TypeVar("T")
Log = Callable[[str], None]

RETRYABLE = {1205, 1213}  # lock wait timeout, deadlock
DUPLICATE_KEY = 1062


@dataclass(frozen=True)
class MysqlOptions:
    lock_timeout: int = 1  # seconds (MySQL's lock waits take whole seconds)
    retries: int = 30
    backoff: float = 0.05
    backoff_cap: float = 2.0
    batch_size: int | None = None  # rows per copy batch; None: adapted to batch_target
    batch_target: float = 0.05
    batch_first: int = 1000
    batch_max: int = 50_000
    batch_delay: float = 0.002
    max_batches: int | None = None  # stop (as if killed) after this many batches: for tests


class CopyInterrupted(MigrationError):
    """Stopped on purpose after max_batches (as a crash would); start again resumes."""


@dataclass
class OscStats:
    retries: int = 0
    rows: int = 0
    batches: int = 0
    copy_seconds: float = 0.0


class Runner:
    def __init__(self, conn: Any, options: MysqlOptions, log: Log | None = None) -> None:
        self.conn = conn
        self.o = options
        self.log = log or (lambda _m: None)
        self.stats = OscStats()
        t = max(1, int(options.lock_timeout))
        self.execute(f"SET SESSION lock_wait_timeout = {t}, innodb_lock_wait_timeout = {t}")

    def execute(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def retried(self, what: str, fn: Callable[[], T]) -> T:
        import pymysql

        for attempt in range(self.o.retries):
            try:
                return fn()
            except pymysql.err.OperationalError as e:
                if e.args[0] not in RETRYABLE:
                    raise
                if self.conn.get_autocommit() is False:
                    self.conn.rollback()
                self.stats.retries += 1
                pause = random.uniform(0, min(self.o.backoff_cap, self.o.backoff * 2**attempt))
                self.log(f"{what}: {e.args[1]}; retry {attempt + 1} in {pause:.2f}s")
                time.sleep(pause)
        raise MigrationError(
            f"{what}: could not get its lock in {self.o.retries} tries of {self.o.lock_timeout}s; "
            "a long transaction holds the table: find it in SHOW PROCESSLIST, then run again"
        )

    def ddl(self, sql: str) -> None:
        self.retried(sql.split(" (")[0][:80], lambda: self.execute(sql))

    # introspection -------------------------------------------------------------------------
    def table_exists(self, name: str) -> bool:
        rows = self.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE()"
            " AND table_name = %s",
            (name,),
        )
        return bool(rows)

    def trigger_exists(self, name: str) -> bool:
        rows = self.execute(
            "SELECT 1 FROM information_schema.triggers WHERE trigger_schema = DATABASE()"
            " AND trigger_name = %s",
            (name,),
        )
        return bool(rows)

    # steps -----------------------------------------------------------------------------------
    def create_shadow(self, t: TableChange) -> None:
        self.ddl(f"DROP TABLE IF EXISTS {q(t.shadow)}")  # a leftover of a start killed here
        self.ddl(f"CREATE TABLE {q(t.shadow)} LIKE {q(t.table)}")
        if t.alter:
            self.ddl(f"ALTER TABLE {q(t.shadow)} " + ", ".join(t.alter))
        for _, sql in t.keeper_sql():
            self.ddl(sql)
        # LIKE does not copy the counter: without it, ids freed at the end could come back
        rows = self.execute(
            "SELECT auto_increment FROM information_schema.tables WHERE table_schema ="
            " DATABASE() AND table_name = %s",
            (t.table,),
        )
        if rows and rows[0][0]:
            self.ddl(f"ALTER TABLE {q(t.shadow)} AUTO_INCREMENT = {int(rows[0][0])}")

    def create_triggers(self, t: TableChange) -> None:
        for name, sql in t.trigger_sql():
            if not self.trigger_exists(name):
                self.ddl(sql)

    def drop_triggers(self, t: TableChange, keepers: bool = False) -> None:
        for name, _ in t.trigger_sql() + (t.keeper_sql() if keepers else []):
            self.ddl(f"DROP TRIGGER IF EXISTS {q(name)}")

    def bounds(self, t: TableChange) -> Any:
        """The highest key once the triggers are in place: the copy stops there."""
        rows = self.execute(f"SELECT MAX({q(t.pk)}) FROM {q(t.table)}")
        return rows[0][0]

    def copy(
        self, t: TableChange, cursor: Any, upper: Any, save: Callable[[Any, int], None]
    ) -> None:
        """Copy (cursor, upper] in batches; `save(cursor, rows)` runs in each batch's transaction."""
        if upper is None:
            return
        size = self.o.batch_size or self.o.batch_first
        sql, lock = t.copy_sql(), t.lock_sql()
        started = time.monotonic()
        while cursor is None or cursor < upper:
            if self.o.max_batches is not None and self.stats.batches >= self.o.max_batches:
                raise CopyInterrupted(
                    f"copy of {t.table} stopped after {self.stats.batches} batches"
                )
            low = cursor
            rows = self.execute(
                f"SELECT {q(t.pk)} FROM {q(t.table)}"
                + (f" WHERE {q(t.pk)} > %s" if low is not None else "")
                + f" ORDER BY {q(t.pk)} LIMIT 1 OFFSET {size - 1}",
                (low,) if low is not None else None,
            )
            high = upper if not rows or rows[0][0] > upper else rows[0][0]
            began = time.monotonic()

            def batch(low: Any = low, high: Any = high) -> int:
                self.conn.begin()
                try:
                    with self.conn.cursor() as cur:
                        first = f"{q(t.pk)} > %s AND "
                        args = (high,) if low is None else (low, high)
                        cur.execute(lock.replace(first, "") if low is None else lock, args)
                        cur.fetchall()
                        n = cur.execute(sql.replace(first, "") if low is None else sql, args)
                        cur.execute("SHOW WARNINGS")
                        bad = [w for w in cur.fetchall() if w[1] != DUPLICATE_KEY]
                    if bad:
                        self.conn.rollback()
                        raise MigrationError(
                            f"copying {t.table} rows after {low!r}: {bad[0][2]} (MySQL {bad[0][1]});"
                            " the new column type does not hold every value: fix the data or "
                            "the migration, then roll back and start again"
                        )
                    save(high, int(n))
                    self.conn.commit()
                    return int(n)
                except BaseException:
                    if self.conn.open:
                        self.conn.rollback()
                    raise

            retries = self.stats.retries
            copied = self.retried(f"copy {t.table}", batch)
            waited = self.stats.retries > retries
            self.stats.rows += copied
            self.stats.batches += 1
            cursor = high
            if self.o.batch_size is None and waited:  # it met someone's locks: back off
                size = max(100, size // 2)
            elif self.o.batch_size is None:  # aim each batch at batch_target seconds of locks
                took = max(time.monotonic() - began, 1e-4)
                size = int(
                    min(self.o.batch_max, max(100, size * min(2.0, self.o.batch_target / took)))
                )
            time.sleep(self.o.batch_delay)
        self.stats.copy_seconds += time.monotonic() - started

    def swap(self, t: TableChange) -> None:
        """Atomic: every statement sees either the original or the new table, never neither."""
        if self.table_exists(t.old) and not self.table_exists(t.shadow):
            return  # swapped by a start killed before it could record it
        self.ddl(f"RENAME TABLE {q(t.table)} TO {q(t.old)}, {q(t.shadow)} TO {q(t.table)}")


def encode_key(key: Any) -> str | None:
    return None if key is None else json.dumps(key)


def decode_key(text: str | None) -> Any:
    return None if text is None else json.loads(text)
