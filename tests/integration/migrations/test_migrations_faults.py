"""Migrations under faults: a `start` stopped between any two of its statements, and a backfill
killed with SIGKILL at random moments while the old version writes, are resumed (or rolled back)
cleanly and lose no row. pgroll#468 (a start interrupted half-way that could be neither resumed
nor rolled back) is the failure this guards against."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from zerodown.migrations import api
from zerodown.migrations.catalog import read_schema
from zerodown.migrations.executor import Interrupted, Options

pytestmark = pytest.mark.slow

# Every kind of start statement at once: a shadow column with triggers and a backfill, a new
# column with a default, a NOT NULL proven by a check, an index built concurrently.
OPERATIONS: list[dict[str, Any]] = [
    {
        "alter_column": {
            "table": "items",
            "column": "qty",
            "type": "bigint",
            "nullable": False,
            "up": "coalesce(qty, 0) * 2",
            "down": "(qty / 2)::int",
        }
    },
    {
        "add_column": {
            "table": "items",
            "column": {"name": "note", "type": "text", "default": "'-'"},
        }
    },
    {"create_index": {"name": "items_note_idx", "table": "items", "columns": ["note"]}},
]


def setup(url: str, base: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {base}")
        c.execute(f"CREATE TABLE {base}.items (id bigserial PRIMARY KEY, qty int)")
        c.execute(f"INSERT INTO {base}.items (qty) SELECT g FROM generate_series(1, %s) g", (rows,))


def migration_file(tmp: Path) -> Path:
    path = tmp / "0001_items.yaml"
    path.write_text(yaml.safe_dump({"operations": OPERATIONS}))
    return path


def wrong_rows(url: str, base: str, schema: str) -> int:
    """Rows whose new shape disagrees with the old (through the new version's views)."""
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute(
            f"SELECT count(*) FROM {base}.items o FULL JOIN {schema}.items n USING (id)"
            " WHERE n.id IS NULL OR o.id IS NULL OR n.qty IS DISTINCT FROM o.qty::bigint * 2"
            " OR n.note IS DISTINCT FROM '-'"
        ).fetchone()
        assert row is not None
        return int(row[0])


def leftovers(url: str, base: str) -> dict[str, Any]:
    """What a start can leave behind on the table: triggers, version schemas, an index."""
    with psycopg.connect(url, autocommit=True) as c:
        triggers = c.execute(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class r ON r.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = r.relnamespace"
            " WHERE n.nspname = %s AND NOT t.tgisinternal",
            (base,),
        ).fetchone()
        schemas = c.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", (f"{base}\\_0%",)
        ).fetchone()
        indexes = c.execute(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname <> 'items_pkey'",
            (base,),
        ).fetchone()
        shape = read_schema(c, base).to_json()
    return {
        "triggers": triggers and triggers[0],
        "schemas": schemas and schemas[0],
        "indexes": indexes and indexes[0],
        "shape": shape,
    }


def test_start_stopped_after_each_statement_resumes_or_rolls_back(
    mig_db: str, tmp_path: Path
) -> None:
    path = migration_file(tmp_path)
    setup(mig_db, "probe", 10)
    statements = len(api.plan(mig_db, path, options=Options(base_schema="probe")).phases["start"])
    assert statements >= 5, statements  # the test is only as good as the gaps it covers
    for stop_after in range(1, statements + 1):
        base = f"cut{stop_after}"
        setup(mig_db, base, 2000)
        clean = leftovers(mig_db, base)
        with pytest.raises(Interrupted):
            api.start(mig_db, path, options=Options(base_schema=base, max_actions=stop_after))
        options = Options(base_schema=base, batch_delay=0)
        if stop_after % 2:  # resumed: the same command again finishes the job
            schema = api.start(mig_db, path, options=options)
            assert wrong_rows(mig_db, base, schema) == 0, stop_after
            api.complete(mig_db, options=options)
        else:  # rolled back: nothing of it remains, and it can start afresh
            api.rollback(mig_db, options=options)
            assert leftovers(mig_db, base) == clean, stop_after
            schema = api.start(mig_db, path, options=options)
            assert wrong_rows(mig_db, base, schema) == 0, stop_after


def gone_within(url: str, application: str, seconds: float) -> None:
    """Wait until no backend of `application` is connected to the database."""
    deadline = time.monotonic() + seconds
    with psycopg.connect(url, autocommit=True) as c:
        while True:
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s",
                (application,),
            ).fetchone()
            if row == (0,):
                return
            assert time.monotonic() < deadline, f"a {application} backend outlived its client"
            time.sleep(0.01)


class OldVersionWrites:
    """The old version keeps updating and inserting rows through the base table."""

    def __init__(self, url: str, base: str) -> None:
        self.url, self.base = url, base
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.inserted = 0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        rnd = random.Random(7)
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                try:
                    if rnd.random() < 0.7:
                        c.execute(
                            f"UPDATE {self.base}.items SET qty = qty + 1 WHERE id = %s",
                            (rnd.randint(1, 40_000),),
                        )
                    else:
                        c.execute(f"INSERT INTO {self.base}.items (qty) VALUES (1)")
                        self.inserted += 1
                except psycopg.Error as e:  # checked in the test's thread
                    self.errors.append(str(e))
                time.sleep(0.001)

    def __enter__(self) -> OldVersionWrites:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


START = """
import sys
from zerodown.migrations import api
from zerodown.migrations.executor import Options
api.start(sys.argv[1], sys.argv[2], options=Options(base_schema=sys.argv[3]),
          log=lambda m: print(m, flush=True))
"""


def test_backfill_killed_at_random_moments_loses_no_row(mig_db: str, tmp_path: Path) -> None:
    base, rng = "killed", random.Random(2026)
    setup(mig_db, base, 40_000)
    path = migration_file(tmp_path)
    kills = 0
    with OldVersionWrites(mig_db, base) as writes:
        for _ in range(6):
            with subprocess.Popen(
                [sys.executable, "-c", START, mig_db, str(path), base],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as process:
                assert process.stdout is not None
                # "backfill items" or "backfill items: resuming after ['12345']"; EOF: finished
                said = iter(process.stdout.readline, "")
                if not any(line.startswith("backfill items") for line in said):
                    break
                time.sleep(rng.uniform(0.0, 0.4))
                process.send_signal(signal.SIGKILL)
            kills += process.returncode == -signal.SIGKILL
            # The killed client's server backend finishes the statement it was running (a
            # batch) before it sees the closed socket and lets go of the advisory lock.
            gone_within(mig_db, "zerodown:migrate", 30.0)
        schema = api.start(mig_db, path, options=Options(base_schema=base))
        time.sleep(0.2)  # the old version still writes through the triggers afterwards
    print(f"{kills} kills in the backfill, {writes.inserted} rows inserted meanwhile, none lost")
    assert kills >= 3, f"only {kills} kills landed in the backfill"
    assert writes.errors == [] and writes.inserted > 0
    assert wrong_rows(mig_db, base, schema) == 0
    with psycopg.connect(mig_db, autocommit=True) as c:
        count = c.execute(f"SELECT count(*) FROM {base}.items").fetchone()
    assert count == (40_000 + writes.inserted,)
