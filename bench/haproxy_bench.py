"""Throughput and p99 through a zerodown-managed HAProxy beside the same HAProxy configured by hand.

    python bench/haproxy_bench.py [--duration 5] [--connections 50] [--rounds 5]

Starts, all on 127.0.0.1: one fast backend (nginx, one worker, static 200, as in
router_bench.py); a hand-written HAProxy in front of it (HAProxy's defaults, keep-alive on both
sides, no logging); and HAProxy as zerodown's driver runs it (`ManagedHaproxy`: the configuration
zerodown writes, its route table applied through the Runtime API, one `zd1` log line per request
read by the access-log collector in this process, as the controller would). Then runs wrk
(keep-alive) against each, alternating hand-written and managed in every round, and prints the
median and the spread (min-max) of requests/s and p99 over the rounds, and the managed/hand
ratio of the medians. The managed HAProxy's dropped log lines (`show info` DroppedLogs) are
printed too: lines the collector did not read in time.

Needs wrk, haproxy and nginx (`apt-get install -y wrk haproxy nginx-light`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

from router_bench import BACKEND_CONF, need, process, run_wrk, wait_port

from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.net import free_port
from zerodown.paths import Paths
from zerodown.routers.haproxy.driver import ManagedHaproxy
from zerodown.spec.model import Spec

HAND_WRITTEN = """
global
  maxconn 4000
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  option forwardfor
  http-reuse safe
frontend fe
  bind 127.0.0.1:{port}
  default_backend be
backend be
  balance roundrobin
  server s1 127.0.0.1:{backend}
"""


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


async def bench(args: argparse.Namespace) -> None:
    nginx, haproxy = need("nginx"), need("haproxy")
    need("wrk")
    with (
        tempfile.TemporaryDirectory(prefix="zerodown-bench-haproxy-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        ports = {name: free_port() for name in ("backend", "hand", "managed")}
        (d / "backend.conf").write_text(BACKEND_CONF.format(dir=d, port=ports["backend"]))
        (d / "hand.cfg").write_text(
            HAND_WRITTEN.format(port=ports["hand"], backend=ports["backend"])
        )
        nginx_argv = [nginx, "-p", str(d), "-g", "daemon off;", "-c", str(d / "backend.conf")]
        stack.enter_context(process(nginx_argv, d / "backend.log"))
        stack.enter_context(process([haproxy, "-f", str(d / "hand.cfg")], d / "hand.log"))
        spec = Spec.model_validate(
            {
                "service": "bench",
                "run": {"command": ["app"]},
                "router": {"kind": "haproxy", "listen": f"127.0.0.1:{ports['managed']}"},
            }
        )
        paths = Paths.for_spec(d / "zerodown.yaml")
        paths.ensure()
        managed = ManagedHaproxy(paths=paths, spec=spec)
        await managed.start()
        try:
            backend = Backend(f"127.0.0.1:{ports['backend']}", "nginx")
            await managed.apply(RouteTable(1, (Pool("bench", 100, (backend,)),)))
            for port in ports.values():
                wait_port(port)
            cases = {"hand-written": ports["hand"], "zerodown-managed": ports["managed"]}
            results: dict[str, list[tuple[float, float, float]]] = {c: [] for c in cases}
            if args.no_collector:  # what the log lines cost this process, apart
                managed.access.close()
            for port in cases.values():  # warm up connection pools
                await asyncio.to_thread(
                    run_wrk, f"http://127.0.0.1:{port}/", duration=1, connections=args.connections
                )
            for n in range(args.rounds):
                for name, port in cases.items():
                    r = await asyncio.to_thread(
                        run_wrk,
                        f"http://127.0.0.1:{port}/",
                        duration=args.duration,
                        connections=args.connections,
                    )
                    results[name].append(r)
                    print(
                        f"  round {n + 1} {name}: {r[0]:,.0f} req/s, p99 {r[2]:.2f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
            info = await managed.api.command("show info")
            dropped = next(
                (
                    ln.split(":")[1].strip()
                    for ln in info.splitlines()
                    if ln.startswith("DroppedLogs")
                ),
                "?",
            )
            stats = await managed.stats()
            logged = sum(s.requests for s in stats.values())
        finally:
            await managed.stop(grace=5)

    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds alternating, "
        "median (min-max); HAProxy's default threads in both"
    )
    print(f"{'case':<18} {'requests/s':>28} {'p99 ms':>22}")
    for name, rs in results.items():
        print(f"{name:<18} {summary([r[0] for r in rs]):>28} {summary([r[2] for r in rs]):>22}")
    hand = statistics.median(r[0] for r in results["hand-written"])
    ours = statistics.median(r[0] for r in results["zerodown-managed"])
    hand99 = statistics.median(r[2] for r in results["hand-written"])
    ours99 = statistics.median(r[2] for r in results["zerodown-managed"])
    print(f"\nmanaged/hand-written: {ours / hand:.3f}x requests/s, {ours99 / hand99:.2f}x p99")
    print(f"access log: {logged:,} requests counted, {dropped} lines dropped by HAProxy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--rounds", type=int, default=5, help="rounds, each runs both cases")
    p.add_argument(
        "--no-collector", action="store_true", help="do not read the access log (lines dropped)"
    )
    asyncio.run(bench(p.parse_args()))


if __name__ == "__main__":
    main()
