"""The backfill sets the new column itself, its session skipped by the triggers: writes of the
old version that race a batch still end with the right value in the new column.

Each race is made to happen, not hoped for: workload transactions hold row locks that the
batch must wait on, and the test moves on when pg_locks shows the wait, never after a sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml

from zerodown.migrations import api
from zerodown.migrations.executor import Options

BASE = "races"
UP = {
    "alter_column": {
        "table": "items",
        "column": "qty",
        "type": "bigint",
        "up": "qty * 2",
        "down": "(qty / 2)::int",
    }
}


def _until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _backfill_waits_on(watch: psycopg.Connection, pid: int) -> bool:
    """Whether the backfill's batch (the statement that moves its cursor) waits on `pid`."""
    row = watch.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE %s"
        " AND %s = ANY(pg_blocking_pids(pid)))",
        ("%UPDATE zerodown.backfills%", pid),
    ).fetchone()
    return bool(row and row[0])


def _waits(watch: psycopg.Connection, pid: int) -> bool:
    row = watch.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", (pid,)).fetchone()
    return bool(row and row[0])


def test_writes_racing_a_direct_batch_end_right(mig_db: str, tmp_path: Path) -> None:
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {BASE}")
        c.execute(f"CREATE TABLE {BASE}.items (id bigserial PRIMARY KEY, qty int)")
        c.execute(f"INSERT INTO {BASE}.items (qty) SELECT g FROM generate_series(1, 40) g")
    path = tmp_path / "0001_double.yaml"
    path.write_text(yaml.safe_dump({"operations": [UP]}))
    old_side = f"-c search_path={BASE}"  # the old version writes the base tables
    with (
        psycopg.connect(mig_db, autocommit=True) as watch,
        psycopg.connect(mig_db, options=old_side) as rolled_back,
        psycopg.connect(mig_db, options=old_side) as committed,
        psycopg.connect(mig_db, options=old_side) as holder,
        psycopg.connect(mig_db, autocommit=True, options=old_side) as late,
    ):

        def lock_rows(line: str) -> None:
            """Once the triggers are in and before the first batch (ids 1 to 10), rows 2, 5 and
            8 are locked: an update to be rolled back, one to be committed, a lock that
            changes nothing."""
            if line == "backfill items":
                rolled_back.execute("UPDATE items SET qty = 999 WHERE id = 2")
                committed.execute("UPDATE items SET qty = 100 WHERE id = 5")
                holder.execute("SELECT 1 FROM items WHERE id = 8 FOR UPDATE")

        errors: list[BaseException] = []

        def run(fn: Callable[[], object]) -> threading.Thread:
            def body() -> None:
                try:
                    fn()
                except BaseException as e:  # reported in the test's thread
                    errors.append(e)

            thread = threading.Thread(target=body)
            thread.start()
            return thread

        options = Options(base_schema=BASE, batch_size=10, batch_delay=0, lock_timeout=30)
        start = run(lambda: api.start(mig_db, path, options=options, log=lock_rows))
        _until(
            "the batch to wait on row 2",
            lambda: _backfill_waits_on(watch, rolled_back.info.backend_pid),
        )
        rolled_back.rollback()  # the batch fills row 2 from its old value
        _until(
            "the batch to wait on row 5",
            lambda: _backfill_waits_on(watch, committed.info.backend_pid),
        )
        committed.commit()  # its trigger filled row 5: the batch, rechecking, leaves it
        _until(
            "the batch to wait on row 8", lambda: _backfill_waits_on(watch, holder.info.backend_pid)
        )
        # the batch now holds rows 1 to 7 uncommitted: a write to row 3 waits for it, then
        # overwrites the batch's value through its own trigger
        write = run(lambda: late.execute("UPDATE items SET qty = 50 WHERE id = 3"))
        _until(
            "the write to row 3 to wait on the batch", lambda: _waits(watch, late.info.backend_pid)
        )
        holder.commit()
        start.join(60)
        write.join(60)
        assert not errors, errors
        assert not start.is_alive() and not write.is_alive()
        stats = api.last_stats(mig_db)
        assert stats is not None
        assert not any("the triggers fill the rows" in e for e in stats.events)  # it was direct
        rows = {
            i: (qty, new)
            for i, qty, new in watch.execute(f"SELECT id, qty, _zd_new_qty FROM {BASE}.items")
        }
    assert rows[2] == (2, 4)
    assert rows[3] == (50, 100)
    assert rows[5] == (100, 200)
    assert rows[8] == (8, 16)
    assert {i: r for i, r in rows.items() if r[1] != r[0] * 2} == {}
    api.rollback(mig_db, options=Options(base_schema=BASE))


def test_an_expression_only_the_trigger_accepts_keeps_the_trigger(
    mig_db: str, tmp_path: Path
) -> None:
    """plpgsql assigns text to jsonb (by its text form); an UPDATE's SET refuses it. The
    backfill sees that before its first batch and lets the triggers fill the rows."""
    base = "fallback"
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {base}")
        c.execute(f"CREATE TABLE {base}.docs (id bigserial PRIMARY KEY, body text)")
        c.execute(
            f"INSERT INTO {base}.docs (body)"
            " SELECT format('{\"n\": %s}', g) FROM generate_series(1, 25) g"
        )
    path = tmp_path / "0001_json.yaml"
    op = {"add_column": {"table": "docs", "column": {"name": "doc", "type": "jsonb"}, "up": "body"}}
    path.write_text(yaml.safe_dump({"operations": [op]}))
    options = Options(base_schema=base, batch_size=10, batch_delay=0)
    api.start(mig_db, path, options=options)
    stats = api.last_stats(mig_db)
    assert stats is not None
    assert any("the triggers fill the rows" in e for e in stats.events)
    with psycopg.connect(mig_db, autocommit=True) as c:
        row = c.execute(
            f"SELECT count(*) FILTER (WHERE doc = body::jsonb), count(*) FROM {base}.docs"
        ).fetchone()
    assert row == (25, 25)
    api.rollback(mig_db, options=options)


def test_batch_share_caps_a_batch_at_a_share_of_the_keys(mig_db: str, tmp_path: Path) -> None:
    base = "share"
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {base}")
        c.execute(f"CREATE TABLE {base}.items (id bigserial PRIMARY KEY, qty int)")
        c.execute(f"INSERT INTO {base}.items (qty) SELECT g FROM generate_series(1, 5000) g")
        c.execute(f"ANALYZE {base}.items")
    path = tmp_path / "0001_double.yaml"
    path.write_text(yaml.safe_dump({"operations": [UP]}))
    options = Options(base_schema=base, batch_share=0.05, batch_first=100, batch_delay=0)
    api.start(mig_db, path, options=options)
    stats = api.last_stats(mig_db)
    assert stats is not None and stats.batch_sizes is not None
    assert stats.batch_sizes[1] <= 250  # 5 % of 5,000 rows, however fast the batches were
    assert stats.batches >= 20
    assert stats.backfilled_rows == 5000
    api.rollback(mig_db, options=options)


def test_the_batches_commit_without_waiting_for_the_wal_flush(mig_db: str, tmp_path: Path) -> None:
    """The batches run with synchronous_commit off (a batch lost in a server crash is lost
    with its cursor move, the same transaction, and is done again), and only they: the up
    expression reads the setting, so each row says what the statement that filled it ran
    with, and a write of the old version after the backfill, filled by its trigger, says the
    server's own setting."""
    base = "commits"
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {base}")
        c.execute(f"CREATE TABLE {base}.items (id bigserial PRIMARY KEY, mode text)")
        c.execute(f"INSERT INTO {base}.items (mode) SELECT 'x' FROM generate_series(1, 30)")
        server = c.execute("SHOW synchronous_commit").fetchone()
    assert server is not None and server[0] != "off"
    path = tmp_path / "0001_mode.yaml"
    fill = {
        "table": "items",
        "column": "mode",
        "type": "text",
        "up": "current_setting('synchronous_commit')",
        "down": "mode",
    }
    path.write_text(yaml.safe_dump({"operations": [{"alter_column": fill}]}))
    options = Options(base_schema=base, batch_size=10, batch_delay=0)
    api.start(mig_db, path, options=options)
    stats = api.last_stats(mig_db)
    assert stats is not None and stats.batches == 3
    assert not any("the triggers fill the rows" in e for e in stats.events)  # it was direct
    with psycopg.connect(mig_db, autocommit=True, options=f"-c search_path={base}") as c:
        c.execute("INSERT INTO items (mode) VALUES ('y')")
        rows = c.execute(
            f"SELECT mode, _zd_new_mode, count(*) FROM {base}.items GROUP BY 1, 2 ORDER BY 1"
        ).fetchall()
    assert rows == [("x", "off", 30), ("y", server[0], 1)]
    api.rollback(mig_db, options=Options(base_schema=base))
