"""Requests lost when the router itself is restarted or dies, under steady load.

    python bench/router_restart.py [--rate 300] [--rounds 3] [--hold 5]

A service of two sample-app instances behind the built-in router, run by `zerodown up`; the load
generator sends `--rate` requests/s (keep-alive). Per round, in one load window each:

- `zerodown router restart`: a successor takes the sockets over;
- SIGTERM to the router: it drains and exits, the controller starts another;
- kill -9 of the router: the controller starts another; "back after" is the time from the kill
  until the new router answers its admin socket;
- `zerodown hold --max 30s` for --hold seconds, then `zerodown release` (latency: the worst
  request sent while held).

Prints a markdown table: per case, failed requests of each round, then the median and spread.
Only loopback traffic, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from zerodown.loadgen import LoadGenerator, Report
from zerodown.net import free_port

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def zd(spec: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(spec)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


def router_pid(state: Path) -> int:
    while True:
        try:
            return int((state / "router.pid").read_text())
        except ValueError:  # being written
            time.sleep(0.001)


def answers(admin_socket: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(admin_socket))
        except OSError:
            return False
    return True


def window(
    port: int, rate: float, connections: int, action: Callable[[], float]
) -> tuple[Report, float]:
    """Load for a second, the action, then two more seconds of load."""
    load = LoadGenerator(
        f"http://127.0.0.1:{port}/", rate=rate, connections=connections, timeout=30, max_seconds=90
    )
    with load:
        time.sleep(1.0)
        figure = action()
        time.sleep(2.0)
    return load.report, figure


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):g} ({min(values):g}-{max(values):g})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="keep-alive connections of the load generator (each one a killed router held "
        "fails its next request: the generator does not notice a closed idle connection)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zerodown-bench-"))
    state = root / ".zerodown"
    port = free_port()
    spec = root / "zerodown.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "service": "shop",
                "instances": 2,
                "run": {"command": [sys.executable, str(APP), "{port}", "{version}"]},
                "probes": {
                    "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 50}
                },
                "router": {"listen": f"127.0.0.1:{port}"},
            }
        )
    )

    def restart() -> float:
        zd(spec, "router", "restart")
        return 0.0

    def sigterm() -> float:
        os.kill(router_pid(state), signal.SIGTERM)
        return 0.0

    def kill9() -> float:
        old = router_pid(state)
        killed = time.monotonic()
        os.kill(old, signal.SIGKILL)
        while not (router_pid(state) != old and answers(state / "router.sock")):
            time.sleep(0.005)
        return time.monotonic() - killed

    def hold() -> float:
        """The hold's real length, from the router's log (each CLI call takes a while)."""
        zd(spec, "hold", "--max", "60s")
        time.sleep(args.hold)
        zd(spec, "release")
        events = [json.loads(line) for line in (state / "logs" / "router.log").open()]
        held = [e["ts"] for e in events if e["event"] == "router.holding"][-1]
        released = [e["ts"] for e in events if e["event"] == "router.released"][-1]
        return float(released - held)

    cases: dict[str, Callable[[], float]] = {
        "zerodown router restart": restart,
        "SIGTERM to the router": sigterm,
        "kill -9 of the router": kill9,
        f"zerodown hold, {args.hold:g} s, then release": hold,
    }
    if args.only:
        cases = {k: v for k, v in cases.items() if args.only in k}
    failed: dict[str, list[float]] = {name: [] for name in cases}
    totals: dict[str, list[float]] = {name: [] for name in cases}
    figures: dict[str, list[float]] = {name: [] for name in cases}
    worst: dict[str, list[float]] = {name: [] for name in cases}
    try:
        zd(spec, "up", "--version", "v1")
        for _ in range(args.rounds):
            for name, action in cases.items():
                # A hold needs a connection per held request to keep the rate up.
                connections = 400 if action is hold else args.connections
                report, figure = window(port, args.rate, connections, action)
                failed[name].append(len(report.failed))
                totals[name].append(report.total)
                figures[name].append(round(figure, 3))
                worst[name].append(round(max(s.latency for s in report.samples), 2))
                print(f"{name}: {len(report.failed)} failed of {report.total}", flush=True)
    finally:
        zd(spec, "down")
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"\nrate {args.rate:g} req/s, {args.connections} connections (400 for the hold), "
        f"{args.rounds} rounds; median (min-max)\n"
    )
    print("| case | failed requests | of | worst latency s | router back after s / hold lasted s |")
    print("|---|---:|---:|---:|---:|")
    for name in cases:
        back = spread(figures[name]) if any(figures[name]) else "-"
        print(
            f"| {name} | {spread(failed[name])} | {spread(totals[name])} | "
            f"{spread(worst[name])} | {back} |"
        )


if __name__ == "__main__":
    main()
