"""Expand with backfill of a big table while a workload runs, beside a plain ALTER + UPDATE.

    python bench/migrations_bench.py [--rows 1000000] [--database URL] [--workers 2]

The migration changes `items.qty` from integer to bigint and doubles it (`alter_column` with
`up`: shadow column, triggers, batched backfill, NOT VALID + VALIDATE). The baseline does the
same in the usual way: `ALTER TABLE items ALTER COLUMN qty TYPE bigint; UPDATE items SET qty =
qty * 2`. During both, `--workers` clients run point reads, updates and inserts on the table
through the old version's schema. It prints rows/s, the workload's p50/p99/max latency before
and during each change, failed workload statements, and the longest lock wait seen in
pg_stat_activity (sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from zerodown.migrations import api
from zerodown.migrations.executor import Options


class Workload:
    def __init__(self, url: str, rows: int, workers: int) -> None:
        self.url, self.rows, self.workers = url, rows, workers
        self.samples: list[tuple[float, float]] = []  # (start time, latency)
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(workers)]

    def _run(self, seed: int) -> None:
        rnd = random.Random(seed)
        with psycopg.connect(self.url, autocommit=True, application_name="bench:v1") as c:
            while not self.stop.is_set():
                key = rnd.randint(1, self.rows)
                kind = rnd.random()
                t0 = time.perf_counter()
                try:
                    if kind < 0.6:
                        c.execute("SELECT qty FROM items WHERE id = %s", (key,)).fetchone()
                    elif kind < 0.9:
                        c.execute("UPDATE items SET qty = qty + 1 WHERE id = %s", (key,))
                    else:
                        c.execute("INSERT INTO items (qty, note) VALUES (1, 'w')")
                except psycopg.Error as e:
                    with self.lock:
                        self.errors += 1
                        kind = type(e).__name__
                        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
                t1 = time.perf_counter()
                with self.lock:
                    self.samples.append((t0, t1 - t0))
                time.sleep(0.002)

    def __enter__(self) -> Workload:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def window(self, start: float, end: float) -> dict[str, float]:
        """Statements that ran at any moment of [start, end]: one that began during the change
        and was still waiting when it returned counts, with its whole latency."""
        with self.lock:
            lat = sorted(x for t, x in self.samples if t <= end and t + x >= start)
        if not lat:
            return {"ops": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        return {
            "ops": len(lat),
            "ops_per_s": len(lat) / max(end - start, 1e-9),
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "max_ms": lat[-1] * 1000,
        }


class LockWatch:
    """Longest time any backend has been waiting on a heavyweight lock, sampled every 20 ms,
    measured from when its wait began (pg_locks.waitstart, PostgreSQL 14+)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.longest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                row = c.execute(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)), 0)"
                    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                ).fetchone()
                self.longest = max(self.longest, float(row[0]) if row else 0.0)
                time.sleep(0.02)

    def __enter__(self) -> LockWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def load(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS items CASCADE")
        c.execute("CREATE TABLE items (id bigserial PRIMARY KEY, qty integer, note text)")
        c.execute(
            "INSERT INTO items (qty, note) SELECT g %% 1000, 'row ' || g"
            " FROM generate_series(1, %s) g",
            (rows,),
        )
        c.execute("VACUUM ANALYZE items")


def measure(url: str, rows: int, workers: int, change: Any, warm: float) -> dict[str, Any]:
    with Workload(url, rows, workers) as w:
        t0 = time.perf_counter()
        time.sleep(warm)
        t1 = time.perf_counter()
        with LockWatch(url) as lw:
            change()
            t2 = time.perf_counter()
        time.sleep(0.5)
    return {
        "seconds": t2 - t1,
        "rows_per_s": rows / (t2 - t1),
        "before": w.window(t0 + 0.5, t1),
        "during": w.window(t1, t2),
        "longest_lock_wait_ms": lw.longest * 1000,
        "failed_statements": w.errors,
        "error_kinds": w.error_kinds,
    }


def fmt(name: str, r: dict[str, Any]) -> str:
    b, d = r["before"], r["during"]
    return (
        f"{name:<26} {r['seconds']:8.1f} s {r['rows_per_s']:>10,.0f} rows/s | "
        f"p99 before {b['p99_ms']:6.1f} ms, during {d['p99_ms']:8.1f} ms "
        f"(max {d['max_ms']:8.1f} ms, {d.get('ops_per_s', 0):5.0f} ops/s) | "
        f"longest lock wait {r['longest_lock_wait_ms']:8.1f} ms | failed {r['failed_statements']}"
        + (f" {r['error_kinds']}" if r["error_kinds"] else "")
    )


def spread(values: list[float]) -> str:
    """Median and range over the rounds, e.g. "23,120 (21,900-24,010)"."""
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def one_round(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as c:  # each round starts the migration afresh
        c.execute("DROP SCHEMA IF EXISTS zerodown CASCADE")
        c.execute("DROP SCHEMA IF EXISTS public_0001_qty_bigint CASCADE")
    load(url, args.rows)
    options = Options(
        batch_size=args.batch_size, batch_target=args.batch_target, batch_delay=args.batch_delay
    )
    events: list[str] = []
    zd = measure(
        url,
        args.rows,
        args.workers,
        lambda: api.start(url, path, options=options, log=events.append),
        args.warm,
    )
    started = time.perf_counter()
    api.complete(url, options=options)
    zd["complete_seconds"] = time.perf_counter() - started
    print(fmt("zerodown migrate start", zd))
    zd["backfill"] = next((e for e in events if ": done" in e), "")
    print(f"{'':<26} {zd['backfill']}")
    load(url, args.rows)

    def plain() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("ALTER TABLE items ALTER COLUMN qty TYPE bigint")
            c.execute("UPDATE items SET qty = qty * 2")

    base = measure(url, args.rows, args.workers, plain, args.warm)
    print(fmt("plain ALTER + UPDATE", base))
    return {"zerodown": zd, "plain": base}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def col(side: str, key: str, sub: str | None = None) -> list[float]:
        return [float(r[side][key][sub] if sub else r[side][key]) for r in rounds]

    zd_rate, plain_rate = col("zerodown", "rows_per_s"), col("plain", "rows_per_s")
    before, during = col("zerodown", "before", "p99_ms"), col("zerodown", "during", "p99_ms")
    return {
        "rounds": len(rounds),
        "zerodown_rows_per_s": statistics.median(zd_rate),
        "plain_rows_per_s": statistics.median(plain_rate),
        "rate_ratio": statistics.median(z / b for z, b in zip(zd_rate, plain_rate, strict=True)),
        "zerodown_p99_increase": statistics.median(
            d / b - 1 for d, b in zip(during, before, strict=True)
        ),
        "zerodown_longest_lock_wait_ms": max(col("zerodown", "longest_lock_wait_ms")),
        "zerodown_failed_statements": sum(col("zerodown", "failed_statements")),
        "plain_longest_lock_wait_ms": max(col("plain", "longest_lock_wait_ms")),
        "plain_failed_statements": sum(col("plain", "failed_statements")),
        "table": {
            side: {
                "seconds": spread(col(side, "seconds")),
                "rows_per_s": spread(col(side, "rows_per_s")),
                "p99_before_ms": spread(col(side, "before", "p99_ms")),
                "p99_during_ms": spread(col(side, "during", "p99_ms")),
                "longest_lock_wait_ms": spread(col(side, "longest_lock_wait_ms")),
            }
            for side in ("zerodown", "plain")
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--batch-size", type=int, default=None, help="a fixed batch size (default: adapted)"
    )
    ap.add_argument("--warm", type=float, default=5.0, help="seconds of workload before")
    ap.add_argument("--batch-target", type=float, default=Options.batch_target)
    ap.add_argument("--batch-delay", type=float, default=Options.batch_delay)
    ap.add_argument("--json", type=Path, help="write the summary here")
    ap.add_argument(
        "--database",
        default=os.environ.get(
            "ZERODOWN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="server to create a scratch database on",
    )
    args = ap.parse_args()
    name = f"zd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.database, autocommit=True) as admin:
        version = admin.execute("SHOW server_version").fetchone()
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(args.database, dbname=name)
    batch = args.batch_size or "adapted"
    print(
        f"PostgreSQL {version[0] if version else '?'}, {os.cpu_count()} CPUs, "
        f"{args.rows:,} rows, {args.workers} workload clients, batch {batch}, "
        f"{args.rounds} rounds"
    )
    rounds = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "0001_qty_bigint.yaml"
            path.write_text(
                "operations:\n  - alter_column:\n      table: items\n      column: qty\n"
                "      type: bigint\n      up: qty * 2\n      down: (qty / 2)::integer\n"
            )
            for n in range(args.rounds):
                print(f"round {n + 1}:")
                rounds.append(one_round(url, path, args))
    finally:
        with psycopg.connect(args.database, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    result = summary(rounds)
    print("median (range) over the rounds:")
    for side, row in result["table"].items():
        print(f"  {side:<9} " + " | ".join(f"{k} {v}" for k, v in row.items()))
    print(
        f"zerodown's backfill at {result['rate_ratio']:.0%} of the plain UPDATE's rows/s, "
        f"workload p99 {result['zerodown_p99_increase']:+.0%}, longest lock wait "
        f"{result['zerodown_longest_lock_wait_ms']:.0f} ms, "
        f"{result['zerodown_failed_statements']:.0f} failed statements"
    )
    if args.json:
        args.json.write_text(json.dumps({"migrations": result, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
