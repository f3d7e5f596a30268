"""Expand with backfill of a big table while a workload runs, beside a plain ALTER + UPDATE.

    python bench/migrations_bench.py [--rows 1000000] [--database URL] [--workers 2]

The migration changes `items.qty` from integer to bigint and doubles it (`alter_column` with
`up`: shadow column, triggers, batched backfill, NOT VALID + VALIDATE). The baseline does the
same in the usual way: `ALTER TABLE items ALTER COLUMN qty TYPE bigint; UPDATE items SET qty =
qty * 2`. During both, `--workers` clients run point reads, updates and inserts on the table
through the old version's schema. It prints rows/s, the workload's p50/p99/max latency before
and during each change, failed workload statements, and the longest lock wait seen in
pg_stat_activity (sampled every 20 ms).

    python bench/migrations_bench.py --rows 1000000 --rounds 5 --compare '' 'batch_duty=1'

compares backfill settings (fields of executor.Options, '' for the defaults) in interleaved
rounds instead: each round runs every setting, then the plain UPDATE once, and each setting's
workload p99 during its backfill is set against its own "triggers installed, no backfill"
window, round by round (median) and over all its rounds' statements together.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
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


def _worker(url: str, rows: int, seed: int, stop: Any, out: Any) -> None:
    """One workload client, in a process of its own: the bench's threads (lock sampler, the
    migration's own client) must not hold the GIL while a workload statement's reply waits."""
    rnd = random.Random(seed)
    samples: list[tuple[float, float, str]] = []  # (start time, latency, kind)
    errors: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True, application_name="bench:v1") as c:
        while not stop.is_set():
            key = rnd.randint(1, rows)
            roll = rnd.random()
            kind = "read" if roll < 0.6 else "update" if roll < 0.9 else "insert"
            t0 = time.perf_counter()
            try:
                if kind == "read":
                    c.execute("SELECT qty FROM items WHERE id = %s", (key,)).fetchone()
                elif kind == "update":
                    c.execute("UPDATE items SET qty = qty + 1 WHERE id = %s", (key,))
                else:
                    c.execute("INSERT INTO items (qty, note) VALUES (1, 'w')")
            except psycopg.Error as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            samples.append((t0, time.perf_counter() - t0, kind))
            time.sleep(0.002)
    out.put((samples, errors))


class Workload:
    """`workers` clients (processes) running point reads, updates and inserts; every statement's
    start (time.perf_counter, one clock for all processes on Linux) and latency is kept."""

    def __init__(self, url: str, rows: int, workers: int) -> None:
        ctx = multiprocessing.get_context("fork")
        self.stop, self.out = ctx.Event(), ctx.Queue()
        self.procs = [
            ctx.Process(target=_worker, args=(url, rows, i, self.stop, self.out), daemon=True)
            for i in range(workers)
        ]
        self.samples: list[tuple[float, float, str]] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def __enter__(self) -> Workload:
        for p in self.procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for _ in self.procs:
            samples, errors = self.out.get(timeout=60)
            self.samples.extend(samples)
            for kind, n in errors.items():
                self.errors += n
                self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n
        for p in self.procs:
            p.join(30)

    def window(
        self,
        start: float,
        end: float,
        kind: str | None = None,
        *,
        began: bool = False,
        skip: tuple[float, float] | None = None,
    ) -> dict[str, float]:
        """Statements that ran at any moment of [start, end]: one that began during the change
        and was still waiting when it returned counts, with its whole latency. `began`: only
        those that began in the window. `skip`: leave out those that ran only inside it (the
        pause the bench makes with the triggers in place, which has a window of its own)."""
        lat = self.latencies(start, end, kind, began=began, skip=skip)
        if not lat:
            return {"ops": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
        seconds = end - start - (skip[1] - skip[0] if skip else 0.0)
        return {
            "ops": len(lat),
            "ops_per_s": len(lat) / max(seconds, 1e-9),
            "p50_ms": statistics.median(lat) * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
            "max_ms": lat[-1] * 1000,
        }

    def latencies(
        self,
        start: float,
        end: float,
        kind: str | None = None,
        *,
        began: bool = False,
        skip: tuple[float, float] | None = None,
    ) -> list[float]:
        """The latencies (s, sorted) of the statements window() counts."""
        return sorted(
            x
            for t, x, k in self.samples
            if t <= end
            and (t >= start if began else t + x >= start)
            and (kind is None or k == kind)
            and (skip is None or not (t >= skip[0] and t + x <= skip[1]))
        )

    def windows(
        self,
        start: float,
        end: float,
        *,
        began: bool = False,
        skip: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        whole: dict[str, Any] = self.window(start, end, began=began, skip=skip)
        whole["by_kind_p99_ms"] = {
            k: self.window(start, end, k, began=began, skip=skip)["p99_ms"]
            for k in ("read", "update", "insert")
        }
        return whole


class LockWatch:
    """Sampled every 20 ms over the whole measure (before and during alike, so its own cost
    falls on both windows): the longest time any backend has been waiting on a heavyweight
    lock, measured from when its wait began (pg_locks.waitstart, PostgreSQL 14+), and what the
    workload's backends and the server were doing at each sample."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, float, list[str], int]] = []
        # (time, longest current wait, what the workload's active backends wait on,
        #  autovacuum workers)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as c:
            while not self.stop.is_set():
                row = c.execute(
                    "SELECT"
                    " (SELECT coalesce(max(extract(epoch FROM clock_timestamp() - l.waitstart)),"
                    "  0) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    "  WHERE NOT l.granted AND a.datname = current_database()),"
                    " coalesce(array_agg(wait_event_type || ':' || wait_event) FILTER ("
                    "  WHERE application_name = 'bench:v1' AND state = 'active'"
                    "  AND wait_event IS NOT NULL), '{}'),"
                    " count(*) FILTER (WHERE backend_type = 'autovacuum worker')"
                    " FROM pg_stat_activity"
                ).fetchone()
                if row:
                    self.samples.append(
                        (time.perf_counter(), float(row[0]), list(row[1]), int(row[2]))
                    )
                time.sleep(0.02)

    def __enter__(self) -> LockWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def window(self, start: float, end: float) -> dict[str, float]:
        s = [x for x in self.samples if start <= x[0] <= end]
        n = max(len(s), 1)
        waits: dict[str, float] = {}
        for x in s:
            for event in x[2]:
                waits[event] = waits.get(event, 0.0) + 1 / n
        return {
            "longest_lock_wait_ms": max((x[1] for x in s), default=0.0) * 1000,
            "samples": len(s),
            "workload_lock_waiting": sum(v for k, v in waits.items() if k.startswith("Lock:")),
            "workload_waits": dict(sorted(waits.items(), key=lambda kv: -kv[1])),
            "autovacuum": sum(x[3] for x in s) / n,
        }


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return (0.0, 0.0)
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return (sum(fields) - idle, sum(fields))


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


def measure(
    url: str, rows: int, workers: int, change: Any, warm: float, marks: dict[str, float]
) -> dict[str, Any]:
    """The workload runs `warm` seconds (the "before" window: no migration), then during
    `change()`, then 1 s more (the "after" window: the change's triggers in place, no backfill,
    but the backfill's dirty pages and WAL still being written). `marks` may receive the times
    at which the change held still with its triggers installed ("hold_start", "hold_end": the
    "triggers" window, left out of the change's time and of its "during" window) and at which
    its backfill began and ended."""
    with Workload(url, rows, workers) as w, LockWatch(url) as lw:
        time.sleep(0.5)  # connections made, caches warm
        t0, c0 = time.perf_counter(), cpu_busy()
        time.sleep(max(warm - 0.5, 0.5))
        t1, c1 = time.perf_counter(), cpu_busy()
        change()
        t2, c2 = time.perf_counter(), cpu_busy()
        time.sleep(1.0)
        t3, c3 = time.perf_counter(), cpu_busy()

    def cpu(a: tuple[float, float], b: tuple[float, float]) -> float:
        return (b[0] - a[0]) / max(b[1] - a[1], 1e-9)

    hold = (marks["hold_start"], marks["hold_end"]) if "hold_end" in marks else None
    held = hold[1] - hold[0] if hold else 0.0
    windows = {"before": (t0, t1, c0, c1), "during": (t1, t2, c1, c2), "after": (t2, t3, c2, c3)}
    out: dict[str, Any] = {
        "seconds": t2 - t1 - held,
        "rows_per_s": rows / (t2 - t1 - held),
        **{
            k: w.windows(a, b, began=k == "after", skip=hold if k == "during" else None)
            for k, (a, b, _, _) in windows.items()
        },
        "cpu_busy": {k: cpu(x, y) for k, (_, _, x, y) in windows.items()},
        "sampled": {k: lw.window(a, b) for k, (a, b, _, _) in windows.items()},
        "longest_lock_wait_ms": lw.window(t1, t2)["longest_lock_wait_ms"],
        "failed_statements": w.errors,
        "error_kinds": w.error_kinds,
    }
    # every statement's latency per window, so that the p99 can also be taken over all the
    # rounds' statements together (pooled, compared): a 2-3 s window's own p99 rests on its
    # slowest ~20 statements
    out["latencies"] = {
        "before": w.latencies(t0, t1),
        "during": w.latencies(t1, t2, skip=hold),
    }
    if hold:
        out["triggers"] = w.windows(*hold, began=True)
        out["sampled"]["triggers"] = lw.window(*hold)
        out["latencies"]["triggers"] = w.latencies(*hold, began=True)
    if "backfill_start" in marks and "backfill_end" in marks:
        b0, b1 = marks["backfill_start"], marks["backfill_end"]
        out["backfill_seconds"] = b1 - b0
        out["backfill_window"] = w.windows(b0, b1)
        out["latencies"]["backfill"] = w.latencies(b0, b1)
        out["backfill_sampled"] = lw.window(b0, b1)
    return out


def fmt(name: str, r: dict[str, Any]) -> str:
    b, d = r["before"], r["during"]
    return (
        f"{name:<26} {r['seconds']:8.1f} s {r['rows_per_s']:>10,.0f} rows/s | "
        f"p99 before {b['p99_ms']:6.1f} ms, during {d['p99_ms']:8.1f} ms "
        f"(max {d['max_ms']:8.1f} ms, {d.get('ops_per_s', 0):5.0f} ops/s) | "
        f"longest lock wait {r['longest_lock_wait_ms']:8.1f} ms | failed {r['failed_statements']}"
        + (f" {r['error_kinds']}" if r["error_kinds"] else "")
        + "\n"
        + f"{'':<26} p99 by kind (read/update/insert) before "
        + "/".join(f"{v:.1f}" for v in b["by_kind_p99_ms"].values())
        + ", during "
        + "/".join(f"{v:.1f}" for v in d["by_kind_p99_ms"].values())
        + " ms"
        + (
            f"; triggers installed, no backfill: p99 {r['triggers']['p99_ms']:.1f} ms"
            if "triggers" in r
            else ""
        )
        + f"; after (no change running) p99 {r['after']['p99_ms']:.1f} ms"
        + (
            f"; backfill alone {r['backfill_seconds']:.1f} s, p99 {r['backfill_window']['p99_ms']:.1f} ms"
            if "backfill_window" in r
            else ""
        )
        + "\n"
        + f"{'':<26} CPU busy before/during/after "
        + "/".join(f"{v:.0%}" for v in r["cpu_busy"].values())
        + "; workload backends waiting on a lock (mean of samples) "
        + "/".join(f"{v['workload_lock_waiting']:.3f}" for v in r["sampled"].values())
        + ", waits during "
        + ", ".join(
            f"{k} {v:.2f}" for k, v in list(r["sampled"]["during"]["workload_waits"].items())[:4]
        )
        + ", before "
        + ", ".join(
            f"{k} {v:.2f}" for k, v in list(r["sampled"]["before"]["workload_waits"].items())[:4]
        )
        + ", autovacuum "
        + "/".join(f"{v['autovacuum']:.2f}" for v in r["sampled"].values())
    )


def spread(values: list[float]) -> str:
    """Median and range over the rounds, e.g. "23,120 (21,900-24,010)"."""
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def options_of(args: argparse.Namespace, setting: str = "") -> Options:
    """The backfill's options: the command line's, then a setting's `field=value,...` over them
    (a field of executor.Options; a value in JSON, or a bare word taken as a string)."""
    options = Options(
        batch_size=args.batch_size,
        batch_target=args.batch_target,
        batch_delay=args.batch_delay,
        batch_duty=args.batch_duty,
        batch_share=args.batch_share,
    )
    changes: dict[str, Any] = {}
    for item in filter(None, setting.split(",")):
        key, _, text = item.partition("=")
        if key.strip() not in Options.__dataclass_fields__:
            raise SystemExit(f"--compare: {key.strip()!r} is not a field of executor.Options")
        try:
            changes[key.strip()] = json.loads(text)
        except ValueError:
            changes[key.strip()] = text.strip()
    return dataclasses.replace(options, **changes)


def zerodown_run(
    url: str, path: Path, args: argparse.Namespace, options: Options
) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as c:  # each run starts the migration afresh
        c.execute("DROP SCHEMA IF EXISTS zerodown CASCADE")
        c.execute("DROP SCHEMA IF EXISTS public_0001_qty_bigint CASCADE")
    load(url, args.rows)
    events: list[str] = []
    marks: dict[str, float] = {}

    def log(line: str) -> None:
        events.append(line)
        if line.startswith("backfill ") and "hold_start" not in marks and args.checkpoint:
            # a real table's pages are older than the last checkpoint: each one's first change
            # in the backfill then writes a full-page image to the WAL
            lsn.execute("CHECKPOINT")
        if line.startswith("backfill ") and "hold_start" not in marks and args.hold > 0:
            # The triggers are in place and the backfill not begun: the workload runs
            # `hold` seconds like this (the "triggers" window), then the backfill goes on.
            marks["hold_start"] = time.perf_counter()
            time.sleep(args.hold)
            marks["hold_end"] = time.perf_counter()
        if line.startswith("backfill "):
            marks.setdefault("backfill_start", time.perf_counter())
            if ": done" in line:
                marks["backfill_end"] = time.perf_counter()
            wal.append(float(lsn.execute("SELECT pg_current_wal_lsn() - '0/0'").fetchone()[0]))  # type: ignore[index]

    wal: list[float] = []  # the server's WAL position at the backfill's first and last event
    with psycopg.connect(url, autocommit=True) as lsn:
        zd = measure(
            url,
            args.rows,
            args.workers,
            lambda: api.start(url, path, options=options, log=log),
            args.warm,
            marks,
        )
    zd["backfill_wal_mb"] = (wal[-1] - wal[0]) / 1e6 if len(wal) > 1 else 0.0
    started = time.perf_counter()
    api.complete(url, options=options)
    zd["complete_seconds"] = time.perf_counter() - started
    print(fmt("zerodown migrate start", zd))
    zd["backfill"] = next((e for e in events if ": done" in e), "")
    print(f"{'':<26} {zd['backfill']}; {zd['backfill_wal_mb']:.0f} MB of WAL during it")
    return zd


def plain_run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    load(url, args.rows)

    def plain() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("ALTER TABLE items ALTER COLUMN qty TYPE bigint")
            c.execute("UPDATE items SET qty = qty * 2")

    base = measure(url, args.rows, args.workers, plain, args.warm, {})
    print(fmt("plain ALTER + UPDATE", base))
    return base


def one_round(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    zd = zerodown_run(url, path, args, options_of(args))
    return {"zerodown": zd, "plain": plain_run(url, args)}


def pooled_p99(lists: list[list[float]]) -> float:
    """The p99 (ms) of several windows' latencies (s) together."""
    lat = sorted(x for one in lists for x in one)
    return lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0


def compared(rounds: list[dict[str, Any]], settings: list[str]) -> dict[str, Any]:
    """Each setting over the rounds: its rows/s against the same round's plain UPDATE (median),
    and the workload's p99 over all its rounds' statements together, during the backfill and
    during the whole change, against the triggers installed with no backfill (the same rounds'
    hold windows together) and against no migration (their before windows)."""

    # the triggers window is the same for every setting (no batch has run yet): all of them
    # together are the common baseline, the steadiest figure the bench has
    common = pooled_p99([r[s]["latencies"].get("triggers", []) for r in rounds for s in settings])
    out: dict[str, Any] = {}
    for setting in settings:
        runs = [r[setting] for r in rounds]
        lat = {
            k: pooled_p99([run["latencies"].get(k, []) for run in runs])
            for k in ("before", "triggers", "during", "backfill")
        }
        ratios = [
            run["rows_per_s"] / r["plain"]["rows_per_s"]
            for run, r in zip(runs, rounds, strict=True)
        ]
        per_round = [
            pooled_p99([run["latencies"].get("backfill", [])])
            / max(pooled_p99([run["latencies"]["triggers"]]), 1e-9)
            - 1
            for run in runs
            if "triggers" in run["latencies"]
        ]
        out[setting or "defaults"] = {
            "rate_ratio": statistics.median(ratios),
            "rate_ratios": ratios,
            "rows_per_s": statistics.median(run["rows_per_s"] for run in runs),
            "p99_ms": lat,
            "statements": {
                k: sum(len(run["latencies"].get(k, [])) for run in runs)
                for k in ("triggers", "backfill")
            },
            "backfill_p99_increase_vs_triggers": lat["backfill"] / max(lat["triggers"], 1e-9) - 1,
            "triggers_p99_all_settings_ms": common,
            "backfill_p99_increase_vs_all_triggers": lat["backfill"] / max(common, 1e-9) - 1,
            "during_p99_increase_vs_triggers": lat["during"] / max(lat["triggers"], 1e-9) - 1,
            "during_p99_increase": lat["during"] / max(lat["before"], 1e-9) - 1,
            "per_round_backfill_vs_triggers": per_round,
            # each round against its own triggers window, just before its backfill: the load
            # of the machine at that moment weighs on both
            "median_backfill_vs_triggers": statistics.median(per_round) if per_round else None,
            "longest_lock_wait_ms": max(run["longest_lock_wait_ms"] for run in runs),
            "failed_statements": sum(run["failed_statements"] for run in runs),
        }
    return out


def compare(url: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Settings measured in interleaved rounds (each round runs every setting, in an order
    rotated from round to round, then the plain UPDATE), so that a machine whose load drifts
    weighs on all of them alike."""
    settings = list(args.compare)
    options = {s: options_of(args, s) for s in settings}
    rounds: list[dict[str, Any]] = []
    for n in range(args.rounds):
        print(f"round {n + 1}:")
        order = settings[n % len(settings) :] + settings[: n % len(settings)]
        one: dict[str, Any] = {}
        for setting in order:
            print(f"  setting {setting or 'defaults'}:")
            one[setting] = zerodown_run(url, path, args, options[setting])
        one["plain"] = plain_run(url, args)
        rounds.append(one)
    result = compared(rounds, settings)
    print(
        f"over {args.rounds} interleaved rounds (rows/s: median of each round's ratio to its plain"
        " UPDATE; p99: all the rounds' statements together):"
    )
    for name, r in result.items():
        lat = r["p99_ms"]
        rate = (
            f"  {name:<40} {r['rate_ratio']:4.0%} of plain ("
            + "/".join(f"{x:.0%}" for x in r["rate_ratios"])
            + ")"
        )
        if not args.workers:  # no workload: the rows/s alone (what a backfill costs by itself)
            print(rate)
            continue
        print(
            rate + f" | p99 none {lat['before']:.2f}, triggers {lat['triggers']:.2f}, backfill"
            f" {lat['backfill']:.2f} ({r['backfill_p99_increase_vs_triggers']:+.0%}; "
            f"{r['backfill_p99_increase_vs_all_triggers']:+.0%} vs all settings' triggers"
            f" {r['triggers_p99_all_settings_ms']:.2f}), during"
            f" {lat['during']:.2f} ms ({r['during_p99_increase_vs_triggers']:+.0%} vs triggers,"
            f" {r['during_p99_increase']:+.0%} vs none) | per round "
            + "/".join(f"{x:+.0%}" for x in r["per_round_backfill_vs_triggers"])
            + (
                f", median {r['median_backfill_vs_triggers']:+.0%}"
                if r["median_backfill_vs_triggers"] is not None
                else ""
            )
            + f" | {r['statements']['triggers']:,}/{r['statements']['backfill']:,} statements"
            f" | lock wait {r['longest_lock_wait_ms']:.0f} ms | failed {r['failed_statements']}"
        )
    for r in rounds:  # the raw latencies are not worth a file
        for run in r.values():
            run.pop("latencies", None)
    return {"compared": result, "rounds": rounds}


def pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The p99s over all the rounds' statements together: more statements in the tail, but a
    round run while the machine was busy sets both and hides the backfill's part (the median
    of the rounds' ratios, in summary(), compares each round with itself)."""
    lat = {
        k: pooled_p99([r["zerodown"]["latencies"].get(k, []) for r in rounds])
        for k in ("before", "triggers", "during")
    }
    out: dict[str, Any] = {
        "zerodown_p99_pooled_ms": lat,
        "zerodown_p99_increase_pooled": lat["during"] / max(lat["before"], 1e-9) - 1,
    }
    if lat["triggers"]:
        out["zerodown_p99_increase_vs_triggers_pooled"] = lat["during"] / lat["triggers"] - 1
    return out


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def col(side: str, key: str, sub: str | None = None) -> list[float]:
        return [float(r[side][key][sub] if sub else r[side][key]) for r in rounds]

    def rise(over: list[float], base: list[float]) -> float:
        return statistics.median(d / b - 1 for d, b in zip(over, base, strict=True))

    zd_rate, plain_rate = col("zerodown", "rows_per_s"), col("plain", "rows_per_s")
    before, during = col("zerodown", "before", "p99_ms"), col("zerodown", "during", "p99_ms")
    held = all("triggers" in r["zerodown"] for r in rounds)
    triggers = col("zerodown", "triggers", "p99_ms") if held else []
    return {
        "rounds": len(rounds),
        "zerodown_rows_per_s": statistics.median(zd_rate),
        "plain_rows_per_s": statistics.median(plain_rate),
        "rate_ratio": statistics.median(z / b for z, b in zip(zd_rate, plain_rate, strict=True)),
        # the workload's p99 while start runs, against the same workload with no migration
        "zerodown_p99_increase": rise(during, before),
        "zerodown_p99_before_ms": statistics.median(before),
        "zerodown_p99_during_ms": statistics.median(during),
        # ... and against it with the triggers installed and no backfill running
        **(
            {
                "zerodown_p99_triggers_ms": statistics.median(triggers),
                "zerodown_p99_increase_triggers": rise(triggers, before),
                "zerodown_p99_increase_vs_triggers": rise(during, triggers),
            }
            if held
            else {}
        ),
        # the same over all the rounds' statements together (a round's 2-3 s window has
        # ~20 statements above its p99, and its p99 moves by tens of % from round to round)
        **pooled(rounds),
        "zerodown_longest_lock_wait_ms": max(col("zerodown", "longest_lock_wait_ms")),
        "zerodown_failed_statements": sum(col("zerodown", "failed_statements")),
        "plain_longest_lock_wait_ms": max(col("plain", "longest_lock_wait_ms")),
        "plain_failed_statements": sum(col("plain", "failed_statements")),
        "table": {
            side: {
                "seconds": spread(col(side, "seconds")),
                "rows_per_s": spread(col(side, "rows_per_s")),
                "p99_before_ms": spread(col(side, "before", "p99_ms")),
                **(
                    {"p99_triggers_ms": spread(col(side, "triggers", "p99_ms"))}
                    if side == "zerodown" and held
                    else {}
                ),
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
    ap.add_argument("--batch-duty", type=float, default=Options.batch_duty)
    ap.add_argument(
        "--batch-share",
        type=float,
        default=Options.batch_share,
        help="the largest share of the table's keys one batch spans (default: no cap)",
    )
    ap.add_argument(
        "--hold",
        type=float,
        default=3.0,
        help="seconds the workload runs with the triggers installed before the backfill begins"
        " (its own p99 window; not counted in the migration's time)",
    )
    ap.add_argument(
        "--checkpoint",
        action="store_true",
        help="CHECKPOINT once the triggers are in, before the backfill (full-page images)",
    )
    ap.add_argument(
        "--compare",
        nargs="+",
        metavar="SETTING",
        help="compare settings in interleaved rounds instead: each SETTING is field=value,..."
        " over executor.Options (e.g. '' 'batch_duty=1,batch_target=0.03'; '' is the defaults)",
    )
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
            if args.compare:
                result = compare(url, path, args)
                if args.json:
                    args.json.write_text(json.dumps(result, indent=1))
                return 0
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
    vs_triggers = (
        f" ({result['zerodown_p99_increase_vs_triggers']:+.0%} vs the triggers installed and no"
        f" backfill, whose own cost is {result['zerodown_p99_increase_triggers']:+.0%})"
        if "zerodown_p99_increase_vs_triggers" in result
        else ""
    )
    print(
        f"over all the rounds' statements together: p99 {result['zerodown_p99_increase_pooled']:+.0%}"
        " vs no migration"
        + (
            f", {result['zerodown_p99_increase_vs_triggers_pooled']:+.0%} vs the triggers installed"
            if "zerodown_p99_increase_vs_triggers_pooled" in result
            else ""
        )
        + " ("
        + " → ".join(f"{k} {v:.2f}" for k, v in result["zerodown_p99_pooled_ms"].items())
        + " ms)"
    )
    print(
        f"zerodown's backfill at {result['rate_ratio']:.0%} of the plain UPDATE's rows/s, "
        f"workload p99 {result['zerodown_p99_increase']:+.0%} vs no migration{vs_triggers},"
        " longest lock wait "
        f"{result['zerodown_longest_lock_wait_ms']:.0f} ms, "
        f"{result['zerodown_failed_statements']:.0f} failed statements"
    )
    for r in rounds:  # the raw latencies are not worth a file
        for side in r.values():
            side.pop("latencies", None)
    if args.json:
        args.json.write_text(json.dumps({"migrations": result, "rounds": rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
