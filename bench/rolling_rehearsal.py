"""Rehearsal: failed/total requests and p50/p99 latency during a rolling deploy under load,
beside the same app restarted naively (stop, then start) as the baseline.

    python bench/rolling_rehearsal.py [--rate 300] [--rounds 3] [--json out.json]

Only loopback traffic, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from zerodown.loadgen import LoadGenerator, Report
from zerodown.net import free_port

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def zd(spec: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(spec)],
        check=True,
        capture_output=True,
        timeout=300,
    )


def zerodown_round(rate: float, version: str, spec: Path, port: int) -> Report:
    with LoadGenerator(f"http://127.0.0.1:{port}/", rate=rate, max_seconds=120) as load:
        time.sleep(1)
        zd(spec, "deploy", version, "--wait")
        time.sleep(1)
    return load.report


def naive_round(rate: float, port: int, version: str) -> Report:
    old = subprocess.Popen([sys.executable, str(APP), str(port), "v-old"])
    time.sleep(0.5)
    with LoadGenerator(f"http://127.0.0.1:{port}/", rate=rate, max_seconds=60) as load:
        time.sleep(1)
        old.send_signal(signal.SIGTERM)
        old.wait(10)
        new = subprocess.Popen([sys.executable, str(APP), str(port), version])
        time.sleep(2)
    new.send_signal(signal.SIGTERM)
    new.wait(10)
    return load.report


def line(name: str, report: Report) -> str:
    return (
        f"| {name} | {len(report.failed)} / {report.total} | "
        f"{report.percentile(50) * 1000:.1f} | {report.percentile(99) * 1000:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()
    rows: dict[str, list[dict[str, float]]] = {"zerodown": [], "naive": []}
    root = Path(tempfile.mkdtemp(prefix="zerodown-bench-"))
    port = free_port()
    spec = root / "zerodown.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "service": "shop",
                "instances": 2,
                "run": {
                    "command": [sys.executable, str(APP), "{port}", "{version}"],
                    "drain": "3s",
                },
                "probes": {
                    "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 25},
                    "readiness": {"http": "/ready", "period": "1s"},
                },
                "router": {"listen": f"127.0.0.1:{port}"},
                "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
            }
        )
    )
    print(f"rate {args.rate:g} req/s, {args.rounds} rounds each\n")
    print("| case | failed / total | p50 ms | p99 ms |\n|---|---|---|---|")
    try:
        zd(spec, "up", "--version", "v0")
        for n in range(args.rounds):
            report = zerodown_round(args.rate, f"v{n + 1}", spec, port)
            rows["zerodown"].append(figures(report))
            print(line(f"zerodown rolling deploy #{n + 1}", report), flush=True)
    finally:
        zd(spec, "down")
        shutil.rmtree(root, ignore_errors=True)
    for n in range(args.rounds):
        report = naive_round(args.rate, free_port(), f"v{n + 1}")
        rows["naive"].append(figures(report))
        print(line(f"naive stop-then-start #{n + 1}", report), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rolling": rows}, indent=1))


def figures(report: Report) -> dict[str, float]:
    return {
        "failed": len(report.failed),
        "total": report.total,
        "p50_ms": report.percentile(50) * 1000,
        "p99_ms": report.percentile(99) * 1000,
    }


if __name__ == "__main__":
    main()
