"""Run planned actions against PostgreSQL without long locks.

- Every DDL statement runs under `lock_timeout` (default 500 ms): if it cannot get its lock in
  that time it gives up instead of queueing every reader and writer behind it, and is retried
  after a jittered, growing pause ("full jitter", as in the AWS Architecture Blog's "Exponential
  Backoff and Jitter").
- CREATE INDEX CONCURRENTLY cannot run in a transaction and leaves an INVALID index behind when
  it fails; that index is detected in pg_index, dropped CONCURRENTLY and built again.
- The backfill touches rows in primary-key order, one batch per statement (its cursor moves in
  the same statement, so a crashed start resumes after the last finished batch). Where it can,
  the batch sets the new columns itself on rows still NULL and the triggers skip its session
  (triggers.py: why a racing write still ends right); otherwise the triggers fill each row. A
  batch's size adapts so that it holds its row locks about `batch_target` seconds and halves
  when anyone waited on it; the backfill rests after each batch so that it works `batch_duty`
  of the time, less while the workload is seen slowed (batching.py, the control law); a fixed
  `batch_size` turns that off and pauses `batch_delay`. Its commits do not wait for the WAL
  flush (synchronous_commit off): a batch lost in a server crash is done again, and filling a
  row twice changes nothing. It stops at the highest key seen once the triggers were in place:
  rows written after that were already filled by the triggers.
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
from .batching import BatchOutcome, next_batch_size, next_duty, pause_after, size_cap
from .schema import ident, literal
from .triggers import DIRECT

T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    base_schema: str = "public"
    lock_timeout: float = 0.5
    retries: int = 30
    backoff: float = 0.05
    backoff_cap: float = 2.0
    batch_size: int | None = None  # rows per batch; None: adapted (see batching.py)
    batch_target: float = 0.1  # seconds an adapted batch aims to hold its row locks
    batch_first: int = 1000  # an adapted backfill's first batch
    batch_max: int = 100_000
    batch_delay: float = 0.005  # the shortest pause between two batches
    batch_duty: float = 0.5  # the largest share of the time an adapted backfill works
    batch_duty_min: float = 0.1  # the least it is throttled down to
    batch_share: float | None = None  # the largest share of the table's keys one batch spans
    max_batches: int | None = None  # stop (as if crashed) after this many batches: for tests
    max_actions: int | None = None  # stop (as if crashed) after this many statements: for tests


class Interrupted(MigrationError):
    """Stopped on purpose, as a crash would (max_actions, max_batches): for tests."""


class BackfillInterrupted(Interrupted):
    """The backfill stopped on purpose (max_batches); running start again resumes it."""


@dataclass
class Stats:
    lock_retries: int = 0
    actions: int = 0
    invalid_indexes_rebuilt: int = 0
    backfilled_rows: int = 0
    batches: int = 0
    batch_sizes: tuple[int, int] | None = None  # smallest and largest batch, for the report
    throttled: int = 0  # batches after which the backfill slowed down (batching.next_duty)
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
            raise _resumable(what, e) from None

    def run(self, action: DBAction) -> None:
        if self.o.max_actions is not None and self.stats.actions >= self.o.max_actions:
            raise Interrupted(f"stopped after {self.stats.actions} statements (max_actions)")
        self.stats.actions += 1
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
        direct = self._direct(qt, b)
        if direct:
            # SET col = (up) for rows still NULL: the batch fills the rows itself and the
            # triggers skip its session (triggers.py says why a racing write still ends right)
            change, only = fill_sql(b.fills)
        else:  # touch every row: its triggers fill it
            first = ident(b.pk[0][0])
            change, only = f"{first} = {first}", ""
        self.conn.execute(f"SET zerodown.backfill = '{DIRECT if direct else 'on'}'")
        self.conn.execute("SET synchronous_commit = off")
        self.conn.execute(f"SET lock_timeout = '{self._ms()}'")
        size = self.o.batch_size or self.o.batch_first
        largest = self.o.batch_max
        if self.o.batch_share is not None:
            est = self.conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (qt,)
            ).fetchone()
            largest = size_cap(
                float(est[0]) if est else -1.0, share=self.o.batch_share, lo=100, hi=largest
            )
            size = min(size, largest)
        duty = self.o.batch_duty
        try:
            while True:
                # The batch is a key range, (cursor, end]: its end is found on the index
                # alone, and the update is then one index range scan. (Joining the table to a
                # list of keys let the planner pick a hash join and a full scan per batch once
                # batches grew past a few thousand rows.)
                lower = f" AND ({pk}) > ({params})" if cursor else ""
                find_end = (
                    f"SELECT ARRAY[{pk_text}] FROM {qt} WHERE ({pk}) <= ({params}){lower}"
                    f" ORDER BY {pk} OFFSET {int(size) - 1} LIMIT 1"
                )
                # One statement updates the range, moves the cursor (in the same implicit
                # transaction: a crash loses neither or both) and looks at the workload once
                # the rows are locked: two round trips per batch, which matters on a busy
                # machine where each one waits for a CPU.
                update = (
                    f"WITH u AS (UPDATE {qt} SET {change}"
                    f" WHERE ({pk}) <= ({params}){lower}{only} RETURNING 1),"
                    " n AS (SELECT count(*) AS rows FROM u),"
                    " c AS (UPDATE zerodown.backfills SET cursor = coalesce(%s, cursor),"
                    " rows = zerodown.backfills.rows + n.rows, done = %s FROM n"
                    " WHERE migration_id = %s AND table_name = %s"
                    f" RETURNING n.rows, {ANYONE_WAITS} AS waits, {ANYONE_SLOWED} AS slowed)"
                    " SELECT rows, waits, slowed FROM c"
                )
                bounds = [*(cursor or [])]
                result: list[Any] = []

                def batch(
                    find_end: str = find_end,
                    update: str = update,
                    bounds: list[Any] = bounds,
                    result: list[Any] = result,
                ) -> None:
                    result.clear()
                    row = self.conn.execute(find_end, [*(upper or []), *bounds]).fetchone()
                    end = row[0] if row else upper  # fewer than `size` rows left: the rest
                    last = None if end == upper else end
                    done = self.conn.execute(
                        update,
                        [
                            *(end or []),
                            *bounds,
                            last,
                            last is None,
                            migration_id,
                            b.table,
                            self.o.batch_target,
                        ],
                    ).fetchone()
                    if done is None:
                        raise MigrationError(f"backfill {b.table}: its cursor row is gone")
                    adapted = self.o.batch_size is None
                    result.extend((int(done[0]), last, adapted and done[1], adapted and done[2]))

                retries, started = self.stats.lock_retries, time.perf_counter()
                try:
                    self.with_retries(f"backfill {b.table}", batch)
                except psycopg.Error as e:
                    raise _resumable(f"backfill {b.table}", e) from None
                count, last, waited, slowed = result
                outcome = BatchOutcome(
                    # the range held `size` keys unless it was the last (a direct batch
                    # writes only those still to fill)
                    rows=size if last is not None else count,
                    seconds=time.perf_counter() - started,
                    blocked=bool(waited) or self.stats.lock_retries > retries,
                    slowed=bool(slowed),
                )
                self._sized(size, last=last is None)
                self.stats.backfilled_rows += count
                self.stats.batches += 1
                if last is None:
                    self.event(f"backfill {b.table}: done{self._batches_said()}")
                    return
                if self.o.batch_size is None:
                    size = next_batch_size(
                        size, outcome, target=self.o.batch_target, lo=100, hi=largest
                    )
                    duty = next_duty(
                        duty,
                        outcome,
                        lo=min(self.o.batch_duty_min, self.o.batch_duty),
                        hi=self.o.batch_duty,
                        step=0.05,
                    )
                    self.stats.throttled += outcome.blocked or outcome.slowed
                cursor = last
                if self.o.max_batches is not None and self.stats.batches >= self.o.max_batches:
                    raise BackfillInterrupted(
                        f"backfill of {b.table} stopped after {self.stats.batches} batches "
                        "(max_batches); run start again to resume"
                    )
                pause = self.o.batch_delay
                if self.o.batch_size is None:
                    pause = pause_after(outcome, duty=duty, least=pause)
                if pause > 0:
                    time.sleep(pause)
        finally:
            self.conn.execute("RESET zerodown.backfill")
            self.conn.execute("RESET synchronous_commit")
            self.conn.execute("RESET lock_timeout")

    def _direct(self, qt: str, b: Backfill) -> bool:
        """Whether the batches can set `b.fills` themselves: PostgreSQL accepts each expression
        as a SET of its column (a plpgsql assignment coerces more freely than an UPDATE's SET:
        an expression only the trigger accepts keeps the trigger)."""
        if not b.fills:
            return False
        sets = fill_sql(b.fills)[0]

        def explain() -> None:
            with self.conn.transaction():
                self.conn.execute(f"SET LOCAL lock_timeout = '{self._ms()}'")
                self.conn.execute(f"EXPLAIN UPDATE {qt} SET {sets} WHERE false")

        try:
            self.with_retries(f"backfill {b.table}", explain)
        except psycopg.Error as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self.event(f"backfill {b.table}: the triggers fill the rows ({first})")
            return False
        return True

    def _batches_said(self) -> str:
        if self.stats.batch_sizes is None:
            return ""
        low, high = self.stats.batch_sizes
        sizes = f"{low:,}" if low == high else f"{low:,} to {high:,}"
        slowed = f", slowed down {self.stats.throttled} times" if self.stats.throttled else ""
        return (
            f" ({self.stats.backfilled_rows:,} rows, {self.stats.batches} batches of {sizes}"
            f"{slowed})"
        )

    def _sized(self, size: int, *, last: bool) -> None:
        if last:
            return  # the short last batch is not a size anyone chose
        low, high = self.stats.batch_sizes or (size, size)
        self.stats.batch_sizes = (min(low, size), max(high, size))


def _resumable(what: str, e: psycopg.Error) -> MigrationError:
    """A statement failed for a reason other than a lock wait: what, the server's first line,
    and how to go on."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return MigrationError(
        f"{what}: {first}; fix the cause and run the same command again (it resumes "
        "where it stopped), or roll the migration back"
    )


# Whether a statement is waiting on a lock this session holds (the batch's rows).
ANYONE_WAITS = (
    "EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted"
    " AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
)
# Whether another client's statement in this database has been in flight, waiting (on a lock,
# the WAL, I/O), for longer than %s seconds: the workload is being slowed now.
ANYONE_SLOWED = (
    "EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND backend_type = 'client backend' AND state = 'active'"
    " AND wait_event_type IN ('Lock', 'LWLock', 'IO')"
    " AND clock_timestamp() - query_start > make_interval(secs => %s))"
)


def fill_sql(fills: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The SET list and the extra WHERE condition of a batch that fills `fills` itself: only
    rows with a column still NULL, and in those only the NULL columns (as the trigger does
    during the backfill: a value already written, by either version, is newer)."""
    if len(fills) == 1:
        sets = f"{ident(fills[0][0])} = ({fills[0][1]})"
    else:
        sets = ", ".join(
            f"{ident(c)} = CASE WHEN {ident(c)} IS NULL THEN ({e}) ELSE {ident(c)} END"
            for c, e in fills
        )
    pending = " OR ".join(f"{ident(c)} IS NULL" for c, _ in fills)
    return sets, f" AND ({pending})"


def drop_schema_action(name: str) -> DBAction:
    return DBAction(
        f"DROP SCHEMA IF EXISTS {ident(name)} CASCADE",
        locks="none on tables (drops the version schema's views)",
    )


def schema_exists_sql(name: str) -> str:
    return f"SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {literal(name)})"
