"""Online schema changes on a real MariaDB: shadow table, triggers, resumable copy, atomic swap,
under a concurrent read/write workload of the old version."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from zerodown.migrations import api
from zerodown.migrations.actions import MigrationError
from zerodown.migrations.mysql import api as mysql_api
from zerodown.migrations.mysql.osc import CopyInterrupted, MysqlOptions

pymysql = pytest.importorskip("pymysql", reason="PyMySQL is not installed")


def _conn(url: str) -> Any:
    return pymysql.connect(**mysql_api.connect_args(url), autocommit=True)


def _sql(url: str, *statements: str) -> list[tuple[Any, ...]]:
    with _conn(url) as c, c.cursor() as cur:
        for s in statements:
            cur.execute(s)
        return list(cur.fetchall())


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _write(tmp: Path, name: str, *ops: dict[str, Any]) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"operations": list(ops)}))
    return path


class OldVersion:
    """The old release: point reads, inserts, updates and deletes naming the old columns only."""

    def __init__(self, url: str, ids: list[int]) -> None:
        self.url = url
        self.qty: dict[int, int] = {}  # what the old version last wrote, per row it touched
        self.ids = list(ids)
        self.deleted: set[int] = set()
        self.failures: list[str] = []
        self.statements = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(2)]

    def __enter__(self) -> OldVersion:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        conn = _conn(self.url)
        with conn.cursor() as cur:
            while not self.stop.is_set():
                with self.lock:
                    target = rnd.choice(self.ids)
                roll = rnd.random()
                try:
                    if roll < 0.5:
                        cur.execute("SELECT id, qty, email FROM items WHERE id = %s", (target,))
                        cur.fetchall()
                    elif roll < 0.75:
                        q = rnd.randint(1, 10_000)
                        with self.lock:
                            if target in self.deleted:
                                continue
                            cur.execute("UPDATE items SET qty = %s WHERE id = %s", (q, target))
                            self.qty[target] = q
                    elif roll < 0.95:
                        q = rnd.randint(1, 10_000)
                        cur.execute("INSERT INTO items (qty, email) VALUES (%s, 'new')", (q,))
                        with self.lock:
                            self.ids.append(int(cur.lastrowid))
                            self.qty[int(cur.lastrowid)] = q
                    else:
                        with self.lock:
                            if target in self.deleted:
                                continue
                            cur.execute("DELETE FROM items WHERE id = %s", (target,))
                            self.deleted.add(target)
                    self.statements += 1
                except Exception as e:
                    self.failures.append(f"{type(e).__name__}: {e}")
        conn.close()


def _wait_statements(old: OldVersion, n: int) -> None:
    deadline = time.monotonic() + 20
    start = old.statements
    while old.statements < start + n and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.slow
def test_online_change_under_load_resumes_swaps_and_keeps_every_row(
    mysql_db: str, tmp_path: Path
) -> None:
    rows = 20_000
    _sql(
        mysql_db,
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, qty INT NOT NULL,"
        " email VARCHAR(100))",
        f"INSERT INTO items (qty, email) SELECT seq, concat('u', seq) FROM seq_1_to_{rows}",
    )
    path = _write(
        tmp_path,
        "0001_doubled",
        {
            "add_column": {
                "table": "items",
                "column": {"name": "doubled", "type": "bigint"},
                "up": "qty * 2",
            }
        },
        {"alter_column": {"table": "items", "column": "qty", "type": "bigint"}},
        {"create_index": {"name": "items_email", "table": "items", "columns": ["email"]}},
    )
    slow = MysqlOptions(batch_size=1000, batch_delay=0.01)
    with OldVersion(mysql_db, list(range(1, rows + 1))) as old:
        _wait_statements(old, 50)
        # killed after 5 batches, as a crash would: the cursor was committed with each batch
        with pytest.raises(CopyInterrupted):
            mysql_api.start(mysql_db, path, options=MysqlOptions(batch_size=1000, max_batches=5))
        cursor = api.status(mysql_db)["active"]["backfills"][0]["cursor"]
        assert 5000 <= int(cursor) < 6000  # five batches of 1,000 (deleted keys leave gaps)
        _wait_statements(old, 50)
        assert mysql_api.start(mysql_db, path, options=slow) == mysql_db.rsplit("/", 1)[1]
        copied = mysql_api.last_stats(mysql_db)
        assert copied is not None and copied.rows <= rows - 5000 + 1000
        # after the swap: the old version goes on, and the new column is readable
        new_reads = _sql(mysql_db, "SELECT count(*) FROM items WHERE doubled IS NOT NULL")
        assert new_reads[0][0] > 0
        _wait_statements(old, 100)
    assert old.failures == []
    assert old.statements > 200

    present = {r[0]: (r[1], r[2]) for r in _sql(mysql_db, "SELECT id, qty, doubled FROM items")}
    expected = set(old.ids) - old.deleted
    assert set(present) == expected  # no row lost, none resurrected
    for i, q in old.qty.items():
        if i in expected:
            assert present[i][0] == q
    # copied rows, trigger-synced rows and the old version's writes after the swap: all filled
    assert all(doubled == qty * 2 for qty, doubled in present.values())
    kind = _sql(
        mysql_db,
        "SELECT data_type FROM information_schema.columns WHERE table_schema = DATABASE()"
        " AND table_name = 'items' AND column_name = 'qty'",
    )
    assert kind == [("bigint",)]

    assert api.complete(mysql_db) == "0001_doubled"
    tables = {r[0] for r in _sql(mysql_db, "SHOW TABLES")}
    assert tables == {"items", "zerodown_migrations", "zerodown_osc"}
    assert _sql(mysql_db, "SHOW TRIGGERS") == []
    assert api.pending(mysql_db, tmp_path) is None


@pytest.mark.slow
def test_refusals_rename_and_rollback(mysql_db: str, tmp_path: Path) -> None:
    _sql(
        mysql_db,
        "CREATE TABLE users (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(100))",
        "INSERT INTO users (email) SELECT concat('u', seq) FROM seq_1_to_300",
        "CREATE TABLE nokey (a INT)",
        "CREATE TABLE parent (id INT PRIMARY KEY)",
        "CREATE TABLE child (id INT PRIMARY KEY, p INT, FOREIGN KEY (p) REFERENCES parent (id))",
    )
    rename = _write(
        tmp_path,
        "0002_rename",
        {"rename_column": {"table": "users", "from": "email", "to": "mail"}},
    )
    with pytest.raises(
        MigrationError,
        match=r"fail from the moment the tables are swapped.*allow: \[rename_column\]",
    ):
        api.start(mysql_db, rename)
    for table, reason in [("nokey", "single-column primary key"), ("child", "foreign keys")]:
        path = _write(
            tmp_path,
            f"x_{table}",
            {"add_column": {"table": table, "column": {"name": "z", "type": "int"}}},
        )
        with pytest.raises(MigrationError, match=reason):
            api.start(mysql_db, path)
        path.unlink()
    drop = _write(tmp_path, "x_drop", {"drop_column": {"table": "users", "column": "email"}})
    with pytest.raises(MigrationError, match="drop_column is not run on MySQL"):
        api.start(mysql_db, drop)
    drop.unlink()
    assert api.status(mysql_db)["active"] is None  # nothing was recorded by a refusal

    # a start stopped before its swap rolls back without a trace
    with pytest.raises(CopyInterrupted):
        mysql_api.start(
            mysql_db,
            rename,
            allow=("rename_column",),
            options=MysqlOptions(batch_size=100, max_batches=1),
        )
    assert api.rollback(mysql_db) == "0002_rename"
    assert {r[0] for r in _sql(mysql_db, "SHOW TABLES")} - {"items"} == {
        "users",
        "nokey",
        "parent",
        "child",
        "zerodown_migrations",
        "zerodown_osc",
    }
    assert _sql(mysql_db, "SHOW TRIGGERS") == []

    # what a user sees: the refusal in one line, exit 2
    refused = _cli("migrate", "start", str(rename), "--database", mysql_db)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "allow: [rename_column]" in refused.stderr and "Traceback" not in refused.stderr

    # allowed: renamed by the swap; a rollback after it is refused (roll forward)
    api.start(mysql_db, rename, allow=("rename_column",))
    shown = _cli("migrate", "status", "--database", mysql_db)
    assert "active:         0002_rename (started)" in shown.stdout, shown.stdout
    assert "backfill users: 300 rows, done" in shown.stdout, shown.stdout
    assert _sql(mysql_db, "SELECT count(*) FROM users WHERE mail LIKE 'u%'") == [(300,)]
    with pytest.raises(MigrationError, match="roll forward"):
        api.rollback(mysql_db)
    api.complete(mysql_db)
