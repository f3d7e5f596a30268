"""The executor's promises on real PostgreSQL: resumable backfill, concurrent writers, lock
timeouts with retries, invalid index rebuild, one active migration, one run at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest
import yaml

from zerodown.core.errors import SpecError
from zerodown.migrations import api, state
from zerodown.migrations.actions import MigrationError
from zerodown.migrations.executor import BackfillInterrupted, Options

ALTER = {
    "alter_column": {
        "table": "items",
        "column": "qty",
        "type": "bigint",
        "nullable": False,
        "up": "coalesce(qty, 0) * 2",
        "down": "(qty / 2)::int",
    }
}


def _setup(url: str, base: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            f"CREATE SCHEMA {base}; CREATE TABLE {base}.items (id bigserial PRIMARY KEY, qty int)"
        )
        c.execute(f"INSERT INTO {base}.items (qty) SELECT g FROM generate_series(1, %s) g", (rows,))


def _write(tmp: Path, name: str, *ops: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"operations": list(ops)}))
    return path


def _unfilled(url: str, base: str) -> int:
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            f"SELECT count(*) FROM {base}.items WHERE _zd_new_qty IS DISTINCT FROM qty::bigint * 2"
        ).fetchone()
        assert row is not None
        return int(row[0])


def test_backfill_resumes_after_an_interruption(mig_db: str, tmp_path: Path) -> None:
    base = "resume"
    _setup(mig_db, base, 5000)
    path = _write(tmp_path, "0001_double", ALTER)
    crashy = Options(base_schema=base, batch_size=500, batch_delay=0, max_batches=3)
    with pytest.raises(BackfillInterrupted):
        api.start(mig_db, path, options=crashy)
    active = api.status(mig_db, options=crashy)["active"]
    assert active["phase"] == "starting"
    assert active["backfills"][0]["rows"] == 1500
    assert active["backfills"][0]["cursor"] == ["1500"]
    assert _unfilled(mig_db, base) == 3500

    options = Options(base_schema=base, batch_size=500, batch_delay=0)
    vschema = api.start(mig_db, path, options=options)
    stats = api.last_stats(mig_db)
    assert stats is not None and stats.backfilled_rows == 3500  # only the rest
    assert _unfilled(mig_db, base) == 0
    assert api.status(mig_db, options=options)["active"]["backfills"][0]["rows"] == 5000
    # a start of an already started migration just returns its schema
    assert api.start(mig_db, path, options=options) == vschema
    api.complete(mig_db, options=options)


@pytest.mark.slow  # a second or more: the full suite runs it
def test_backfill_finishes_under_concurrent_inserts(mig_db: str, tmp_path: Path) -> None:
    base = "busy"
    _setup(mig_db, base, 3000)
    path = _write(tmp_path, "0001_double", ALTER)
    stop = threading.Event()
    inserted = [0]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with psycopg.connect(mig_db, autocommit=True, options=f"-c search_path={base}") as c:
                while not stop.is_set():
                    c.execute("INSERT INTO items (qty) VALUES (7)")
                    c.execute(
                        "UPDATE items SET qty = qty + 1 WHERE id = %s", (inserted[0] % 50 + 1,)
                    )
                    inserted[0] += 1
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        api.start(
            mig_db, path, options=Options(base_schema=base, batch_size=200, batch_delay=0.002)
        )
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join(10)
    assert not errors
    assert inserted[0] > 0
    assert _unfilled(mig_db, base) == 0
    api.rollback(mig_db, options=Options(base_schema=base))
    with psycopg.connect(mig_db, autocommit=True) as c:
        assert c.execute(f"SELECT count(*) FROM {base}.items").fetchone() == (3000 + inserted[0],)


@pytest.mark.slow  # a second or more: the full suite runs it
def test_ddl_waits_out_a_conflicting_lock_with_retries(mig_db: str, tmp_path: Path) -> None:
    base = "locked"
    _setup(mig_db, base, 10)
    path = _write(
        tmp_path,
        "0001_add",
        {"add_column": {"table": "items", "column": {"name": "note", "type": "text"}}},
    )
    holding = threading.Event()

    def hold() -> None:
        with psycopg.connect(mig_db) as c:  # a long read transaction on the table
            c.execute(f"SELECT count(*) FROM {base}.items")
            holding.set()
            time.sleep(1.0)
            c.rollback()

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        options = Options(base_schema=base, lock_timeout=0.1, backoff=0.05, retries=50)
        api.start(mig_db, path, options=options)
    finally:
        thread.join(10)
    stats = api.last_stats(mig_db)
    assert stats is not None and stats.lock_retries >= 1
    assert any("lock wait over 100ms" in e for e in stats.events)
    api.complete(mig_db, options=options)


def test_gives_up_with_a_clear_error_when_the_lock_never_comes(mig_db: str, tmp_path: Path) -> None:
    base = "stuck"
    _setup(mig_db, base, 10)
    path = _write(tmp_path, "0001_drop", {"drop_table": {"table": "items"}})
    options = Options(base_schema=base, lock_timeout=0.05, retries=2, backoff=0.01)
    api.start(mig_db, path, options=options)
    with psycopg.connect(mig_db) as holder:
        holder.execute(f"SELECT 1 FROM {base}.items LIMIT 1")
        with pytest.raises(MigrationError, match="no lock within 50ms after 3 tries"):
            api.complete(mig_db, options=options)
        holder.rollback()
    assert api.status(mig_db, options=options)["active"]["phase"] == "started"
    api.complete(mig_db, options=options)


def test_an_invalid_index_is_dropped_and_rebuilt(mig_db: str, tmp_path: Path) -> None:
    base = "invalid"
    _setup(mig_db, base, 10)
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"UPDATE {base}.items SET qty = 1")
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(f"CREATE UNIQUE INDEX CONCURRENTLY items_qty_key ON {base}.items (qty)")
        c.execute(f"UPDATE {base}.items SET qty = id")
    path = _write(
        tmp_path,
        "0001_idx",
        {
            "create_index": {
                "name": "items_qty_key",
                "table": "items",
                "columns": ["qty"],
                "unique": True,
            }
        },
    )
    options = Options(base_schema=base)
    api.start(mig_db, path, options=options)
    stats = api.last_stats(mig_db)
    assert stats is not None and stats.invalid_indexes_rebuilt == 1
    with psycopg.connect(mig_db, autocommit=True) as c:
        row = c.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
            (f"{base}.items_qty_key",),
        ).fetchone()
        assert row == (True,)
    api.complete(mig_db, options=options)


def test_one_active_migration_per_schema_and_one_run_at_a_time(mig_db: str, tmp_path: Path) -> None:
    base = "single"
    _setup(mig_db, base, 10)
    first = _write(
        tmp_path,
        "0001_a",
        {"add_column": {"table": "items", "column": {"name": "a", "type": "text"}}},
    )
    second = _write(
        tmp_path,
        "0002_b",
        {"add_column": {"table": "items", "column": {"name": "b", "type": "text"}}},
    )
    options = Options(base_schema=base)
    api.start(mig_db, first, options=options)
    with pytest.raises(MigrationError, match="0001_a is active"):
        api.start(mig_db, second, options=options)
    with (
        psycopg.connect(mig_db, autocommit=True) as c,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):  # the database itself refuses a second active migration
        c.execute(
            "INSERT INTO zerodown.migrations (base_schema, name, version_schema,"
            " previous_schema, phase, definition, snapshot) VALUES"
            " (%s, 'x', 'x', 'x', 'started', '{}', '{}')",
            (base,),
        )
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute("SELECT pg_advisory_lock(%s)", (state.ADVISORY_KEY,))
        with pytest.raises(MigrationError, match="another `zerodown migrate` is running"):
            api.complete(mig_db, options=options)
        c.execute("SELECT pg_advisory_unlock(%s)", (state.ADVISORY_KEY,))
    api.complete(mig_db, options=options)
    with pytest.raises(MigrationError, match="cannot be rolled back"):
        api.rollback(mig_db, options=options)
    with pytest.raises(MigrationError, match="no active migration"):
        api.complete(mig_db, options=options)


def test_pending_schema_for_and_connection_counts(mig_db: str, tmp_path: Path) -> None:
    base = "flow"
    _setup(mig_db, base, 3)
    d = tmp_path / "migrations"
    d.mkdir()
    _write(d, "10_c", {"add_column": {"table": "items", "column": {"name": "c", "type": "text"}}})
    _write(d, "2_b", {"add_column": {"table": "items", "column": {"name": "b", "type": "text"}}})
    (d / "README.md").write_text("not a migration")
    options = Options(base_schema=base)
    first = api.pending(mig_db, d, options=options)
    assert first is not None and first.name == "2_b.yaml"  # natural order: 2 before 10
    s2 = api.start(mig_db, first, service="web", version="v2", options=options)
    assert api.pending(mig_db, d, options=options) == first  # still active
    api.complete(mig_db, options=options)
    second = api.pending(mig_db, d, options=options)
    assert second is not None and second.name == "10_c.yaml"
    s3 = api.start(mig_db, second, service="web", version="v3", options=options)
    assert api.schema_for(mig_db, "v3", options=options) == s3
    assert api.schema_for(mig_db, "v2", service="web", options=options) == s2
    assert api.schema_for(mig_db, "v1", options=options) == s2  # unknown: last completed
    api.complete(mig_db, options=options)
    assert api.pending(mig_db, d, options=options) is None
    with psycopg.connect(mig_db, application_name="zerodown:web:v2"):
        assert api.old_version_connections(mig_db, "web", "v2") == 1
    assert api.old_version_connections(mig_db, "web", "v2") == 0
    with pytest.raises(SpecError, match="does not exist"):
        api.pending(mig_db, tmp_path / "nope", options=options)


def test_plan_shows_sql_and_locks_per_phase(mig_db: str, tmp_path: Path) -> None:
    base = "planned"
    _setup(mig_db, base, 3)
    path = _write(tmp_path, "0001_double", ALTER)
    plan = api.plan(mig_db, path, options=Options(base_schema=base))
    assert set(plan.phases) == {"start", "backfill", "views", "complete", "rollback"}
    text = plan.render()
    assert "-- locks: ACCESS EXCLUSIVE on items (brief" in text
    assert 'DROP SCHEMA IF EXISTS "planned_0001_double" CASCADE' in text
    assert api.status(mig_db, options=Options(base_schema=base))["active"] is None


def test_bad_connection_is_a_clear_error() -> None:
    with pytest.raises(MigrationError, match="cannot connect to postgresql://u:\\*\\*\\*@"):
        api.status("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(MigrationError, match="no database given"):
        api.status("")


def test_an_app_role_gets_on_the_views_what_it_had_on_the_tables(
    mig_db: str, tmp_path: Path
) -> None:
    base = "granted"
    _setup(mig_db, base, 3)
    role = f"zd_app_{base}_{abs(hash(mig_db)) % 10_000}"
    path = _write(
        tmp_path, "0001_rename", {"rename_column": {"table": "items", "from": "qty", "to": "n"}}
    )
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"CREATE ROLE {role} NOLOGIN")
        try:
            c.execute(f"GRANT USAGE ON SCHEMA {base} TO {role}")
            c.execute(f"GRANT SELECT, INSERT ON {base}.items TO {role}")
            c.execute(f"GRANT USAGE ON SEQUENCE {base}.items_id_seq TO {role}")
            vschema = api.start(mig_db, path, options=Options(base_schema=base))
            c.execute(f"SET ROLE {role}")
            c.execute(f"SET search_path = {vschema}")
            c.execute("INSERT INTO items (n) VALUES (42)")
            assert c.execute("SELECT count(*) FROM items WHERE n = 42").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute("DELETE FROM items")
            c.execute("RESET ROLE")
            api.rollback(mig_db, options=Options(base_schema=base))
        finally:
            c.execute("RESET ROLE")
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")


def test_a_failed_validation_says_what_to_do_and_start_resumes(mig_db: str, tmp_path: Path) -> None:
    base = "fixup"
    _setup(mig_db, base, 100)
    with psycopg.connect(mig_db, autocommit=True) as c:
        c.execute(f"UPDATE {base}.items SET qty = NULL WHERE id <= 3")
    path = _write(
        tmp_path,
        "0001_notnull",
        {"alter_column": {"table": "items", "column": "qty", "nullable": False}},
    )
    options = Options(base_schema=base)
    with pytest.raises(MigrationError, match=r"_zd_items_qty_notnull.*run the same command again"):
        api.start(mig_db, path, options=options)
    with psycopg.connect(mig_db, autocommit=True, options=f"-c search_path={base}") as old:
        old.execute("UPDATE items SET qty = 0 WHERE qty IS NULL")  # the old version fixes them
    vschema = api.start(mig_db, path, options=options)
    with (
        psycopg.connect(mig_db, autocommit=True, options=f"-c search_path={vschema}") as new,
        pytest.raises(psycopg.errors.CheckViolation),
    ):
        new.execute("INSERT INTO items (qty) VALUES (NULL)")
    api.complete(mig_db, options=options)
    with psycopg.connect(mig_db, autocommit=True) as c:
        row = c.execute(
            "SELECT is_nullable FROM information_schema.columns WHERE table_schema = %s"
            " AND table_name = 'items' AND column_name = 'qty'",
            (base,),
        ).fetchone()
        assert row == ("NO",)
