"""What slows the migration bench's workload: the same workload beside one load at a time.

    python bench/migrations_tail.py [--rounds 3] [--seconds 3] [--rows 1000000]
    python bench/migrations_tail.py --rows 2000000 --rounds 4 --cpu-share 0.55 --file-mb 15 \
        --rates 25000,50000,130000

The workload of bench/migrations_bench.py (two clients: point reads, updates, inserts on
`items`) runs while one backend, in interleaved windows of `--seconds`, does nothing ("idle"),
burns CPU without writing ("cpu", `--cpu-share` of the time), writes WAL on another table with
no lock on `items` ("wal": INSERTs with synchronous_commit off), or updates `items` in key
ranges as the backfill does ("ranges"); and while this process writes a file at `--file-mb`
MB/s with no fsync ("file"; default 80, about the WAL load's rate). `--rates` adds the
backfill's own updates paced to so many rows a second in 1,000-key ranges: the smoothest a
backfill can write its WAL, each range holding its row locks a few ms, so what the workload's
tail is at the rate a target asks of any backfill. Each load's p99 is over all its windows'
statements together; WAL MB/s is the server's WAL position moved per second of the window. If
the workload's tail follows the WAL written rather than the CPU taken, a backfill cannot buy
its p99 back by resting between batches: only by writing less WAL per second; if it follows a
CPU taken as well, only by taking less of a core.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from migrations_bench import Workload, load, pooled_p99
from psycopg.conninfo import make_conninfo

LOADS = {
    "idle": None,
    "cpu": "SELECT count(*) FROM generate_series(1, 300000)",
    "wal": "INSERT INTO other (qty, note) SELECT g, 'row ' || g FROM generate_series(1, 3000) g",
    "ranges": "UPDATE items SET n = qty * 2 WHERE id > %s AND id <= %s",
    "file": None,
}
RANGE_KEYS = 5000  # keys one update of the "ranges" load spans
PACED_KEYS = 1000  # keys one update of a paced load spans (`--rates`)


def cpu_times() -> list[float]:
    """All CPUs' jiffies so far (/proc/stat: user nice system idle iowait irq softirq steal)."""
    return [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]


def p99(lat: list[float]) -> float:
    """The p99 (ms) of one window's latencies (s), as the migration bench computes it."""
    return pooled_p99([lat])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument(
        "--cpu-share",
        type=float,
        default=1.0,
        help="share of the time the cpu load burns (default 1: a whole core)",
    )
    ap.add_argument(
        "--file-mb", type=float, default=80.0, help="MB/s the file load writes (default 80)"
    )
    ap.add_argument(
        "--rates",
        default="",
        help="also the range updates paced to these rows/s, comma-separated (e.g. 25000,50000)",
    )
    ap.add_argument(
        "--database",
        default=os.environ.get(
            "ZERODOWN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = ap.parse_args()
    name = f"zd_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.database, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(args.database, dbname=name)
    paced = {f"{int(r) // 1000}k/s": int(r) for r in args.rates.split(",") if r}
    loads = [*LOADS, *paced]
    plain = 0.0  # rows/s of one UPDATE of the whole table, no workload
    windows: list[tuple[str, float, float, float]] = []  # (load, start, end, WAL bytes)
    cpu: dict[str, list[float]] = {}  # per load: jiffies over its windows
    updated: dict[str, int] = {}  # per load: rows its range updates touched
    try:
        load(url, args.rows)
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE other (id bigserial PRIMARY KEY, qty int, note text)")
            c.execute("ALTER TABLE items ADD COLUMN n bigint")
        with (
            tempfile.TemporaryDirectory() as tmp,
            Workload(url, args.rows, 2) as w,
            psycopg.connect(url, autocommit=True) as h,
        ):
            h.execute("SET synchronous_commit = off")
            chunk, file = b"y" * (1 << 20), os.open(Path(tmp) / "load", os.O_WRONLY | os.O_CREAT)
            key = 0
            time.sleep(1.0)
            for n in range(args.rounds):
                order = loads[n % len(loads) :] + loads[: n % len(loads)]
                for kind in order:
                    lsn0 = h.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()
                    t0, i, c0 = time.perf_counter(), 0, cpu_times()
                    step = PACED_KEYS if kind in paced else RANGE_KEYS  # keys a range update spans
                    while time.perf_counter() - t0 < args.seconds:
                        i += 1
                        if kind == "file":  # 1 MB at a time, left to the kernel's writeback
                            os.pwrite(file, chunk, (i % 256) << 20)
                            time.sleep(max(0.0, t0 + i / args.file_mb - time.perf_counter()))
                        elif kind == "ranges" or kind in paced:
                            h.execute(LOADS["ranges"] or "", (key, key + step))
                            key = (key + step) % args.rows
                            if kind in paced:  # rest until the rate allows the next range
                                rest = t0 + i * step / paced[kind] - time.perf_counter()
                                time.sleep(max(0.0, rest))
                        elif kind == "cpu":  # a statement's burn, then a rest: `--cpu-share`
                            began = time.perf_counter()
                            h.execute(LOADS[kind] or "")
                            burnt = time.perf_counter() - began
                            time.sleep(burnt * (1 / args.cpu_share - 1))
                        elif LOADS[kind]:
                            h.execute(LOADS[kind] or "")
                        else:
                            time.sleep(0.05)
                    t1 = time.perf_counter()
                    if kind == "ranges" or kind in paced:
                        updated[kind] = updated.get(kind, 0) + i * step
                    spent = [b - a for a, b in zip(c0, cpu_times(), strict=True)]
                    cpu[kind] = [
                        a + b for a, b in zip(cpu.get(kind, [0.0] * 8), spent, strict=True)
                    ]
                    lsn1 = h.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()
                    moved = float(lsn1[0]) - float(lsn0[0]) if lsn0 and lsn1 else 0.0
                    windows.append((kind, t0, t1, moved))
            os.close(file)
        if paced:  # the yardstick of the rates: a plain UPDATE of the fresh table, alone
            load(url, args.rows)
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("ALTER TABLE items ADD COLUMN n bigint")
                began = time.perf_counter()
                c.execute("UPDATE items SET n = qty * 2")
                plain = args.rows / (time.perf_counter() - began)
    finally:
        with psycopg.connect(args.database, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(
        f"{args.rows:,} rows, 2 workload clients, {args.rounds} rounds of {args.seconds:.0f} s"
        " windows per load (p99 over all of a load's windows; per window in brackets)"
    )
    for kind in loads:
        mine = [x for x in windows if x[0] == kind]

        def lat(
            keep: object = None, mine: list[tuple[str, float, float, float]] = mine
        ) -> list[float]:
            return [
                x
                for _, a, b, _ in mine
                for t, x, k in w.samples
                if a <= t <= b and (keep is None or (k == "read") == keep)
            ]

        j = cpu[kind]
        per = [p99([x for t, x, _ in w.samples if a <= t <= b]) for _, a, b, _ in mine]
        seconds = sum(b - a for _, a, b, _ in mine)
        mb_s = sum(m for *_, m in mine) / seconds / 1e6
        rows = f" | {updated[kind] / seconds:,.0f} rows/s" if kind in updated else ""
        if kind in updated and plain:
            rows += f" ({updated[kind] / seconds / plain:.0%} of a plain UPDATE's)"
        print(
            f"  {kind:<7} p99 {p99(lat()):5.2f} ms ("
            + "/".join(f"{x:.2f}" for x in per)
            + f"), reads {p99(lat(True)):5.2f}, writes {p99(lat(False)):5.2f} ms |"
            f" {len(lat()):,} statements | WAL {mb_s:5.1f} MB/s{rows} | CPU busy"
            f" {1 - (j[3] + j[4]) / sum(j):.0%}, iowait {j[4] / sum(j):.0%},"
            f" steal {j[7] / sum(j):.0%}"
        )
    if plain:
        print(f"a plain UPDATE of the whole fresh table, alone: {plain:,.0f} rows/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
