"""MariaDB/MySQL online schema change under a workload, beside a plain ALTER + UPDATE.

    python bench/mysql_osc_bench.py [--rows 200000] [--rounds 3] [--database mysql://root@127.0.0.1:3306/]

Each round builds `items` (id, qty int, email) with `--rows` rows in a fresh database, starts
two clients of the old version (60 % point reads, 30 % updates, 10 % inserts, naming the old
columns only), then either runs zerodown's online schema change (add `doubled` filled with
`qty * 2` and widen `qty` to bigint: shadow table, triggers, batched copy, RENAME swap) or the
same change the plain way (`ALTER TABLE … ADD COLUMN doubled bigint, MODIFY qty bigint NOT
NULL; UPDATE items SET doubled = qty * 2`). It prints, per way, the median and the spread over
rounds of: seconds, rows/s, the workload's p99 in the second before, p99 and max latency
during the change, and failed
workload statements.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pymysql

from zerodown.migrations.mysql import api
from zerodown.migrations.mysql.osc import MysqlOptions

MIGRATION = """operations:
  - add_column: {table: items, column: {name: doubled, type: bigint}, up: "qty * 2"}
  - alter_column: {table: items, column: qty, type: bigint, nullable: false}
"""


def connect(url: str) -> Any:
    return pymysql.connect(**api.connect_args(url), autocommit=True)


class Workload:
    def __init__(self, url: str, rows: int, workers: int = 2) -> None:
        self.url, self.rows = url, rows
        self.samples: list[tuple[float, float]] = []
        self.errors = 0
        self.messages: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(workers)]

    def run(self, seed: int) -> None:
        import random

        rnd = random.Random(seed)
        conn = connect(self.url)
        with conn.cursor() as cur:
            while not self.stop.is_set():
                key, roll, began = rnd.randint(1, self.rows), rnd.random(), time.monotonic()
                try:
                    if roll < 0.6:
                        cur.execute("SELECT id, qty, email FROM items WHERE id = %s", (key,))
                        cur.fetchall()
                    elif roll < 0.9:
                        cur.execute("UPDATE items SET qty = qty + 1 WHERE id = %s", (key,))
                    else:
                        cur.execute("INSERT INTO items (qty, email) VALUES (1, 'w')")
                except pymysql.err.MySQLError as e:
                    self.errors += 1
                    self.messages.append(f"{e.args[0]} {e.args[-1]}")
                self.samples.append((began, time.monotonic() - began))
        conn.close()

    def window(self, start: float, end: float) -> tuple[float, float]:
        lat = sorted(d for t, d in self.samples if start <= t <= end) or [0.0]
        return lat[int(len(lat) * 0.99) - 1 if len(lat) > 1 else 0] * 1000, lat[-1] * 1000


def setup(server: str, rows: int) -> str:
    name = f"zd_bench_{secrets.token_hex(3)}"
    with connect(server + "mysql") as c, c.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(
            f"CREATE TABLE {name}.items (id BIGINT AUTO_INCREMENT PRIMARY KEY, qty INT NOT NULL,"
            " email VARCHAR(100))"
        )
        cur.execute(
            f"INSERT INTO {name}.items (qty, email) SELECT seq, concat('u', seq)"
            f" FROM seq_1_to_{rows}"
        )
    return server + name


def one_round(server: str, rows: int, way: str, migration: Path) -> dict[str, float]:
    url = setup(server, rows)
    work = Workload(url, rows)
    for t in work.threads:
        t.start()
    time.sleep(1.0)  # the workload's steady state
    began = time.monotonic()
    if way == "zerodown":
        api.start(url, migration, options=MysqlOptions())
    else:
        with connect(url) as c, c.cursor() as cur:
            cur.execute("ALTER TABLE items ADD COLUMN doubled BIGINT, MODIFY qty BIGINT NOT NULL")
            cur.execute("UPDATE items SET doubled = qty * 2")
    ended = time.monotonic()
    time.sleep(0.5)
    work.stop.set()
    for t in work.threads:
        t.join()
    p99_before, _ = work.window(began - 1.0, began)
    p99, worst = work.window(began, ended)
    for message in sorted(set(work.messages)):
        print(f"  {way}: workload error: {message}", file=sys.stderr)
    with connect(url) as c, c.cursor() as cur:
        cur.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]}")
    seconds = ended - began
    return {
        "seconds": seconds,
        "rows/s": rows / seconds,
        "p99 before ms": p99_before,
        "p99 ms": p99,
        "max ms": worst,
        "failed": float(work.errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", default="mysql://root@127.0.0.1:3306/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        migration = Path(tmp) / "0001_doubled.yaml"
        migration.write_text(MIGRATION)
        for way in ("zerodown", "plain"):
            results = [
                one_round(args.database, args.rows, way, migration) for _ in range(args.rounds)
            ]
            cells = []
            for key in results[0]:
                values = [r[key] for r in results]
                cells.append(
                    f"{key} {statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"
                )
            print(f"{way:<9} " + " | ".join(cells))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
