"""Throughput and p99 through a zerodown-managed HAProxy beside the same HAProxy configured by hand.

    python bench/haproxy_bench.py [--duration 5] [--connections 50] [--rounds 5]

Starts, all on 127.0.0.1: one fast backend (nginx, one worker, static 200 on two ports, as in
nginx_bench.py); three hand-written HAProxies in front of it (HAProxy's defaults, keep-alive on
both sides): **hand-written** (X-Forwarded-For, no logging), **by hand, same headers** (also
X-Forwarded-Proto, as zerodown's routers set it), **by hand, same, logged** (also a line per
request, `option httplog`, into a ring nobody reads); and two HAProxies as zerodown's driver runs
them (`ManagedHaproxy`: the configuration zerodown writes, its route table applied through the
Runtime API):

- **managed, at rest**: one release, nobody reading samples: what runs day to day, with the
  per-request log off (accesslog.LogSwitch);
- **managed, analysis**: a canary (v1 90 / v2 10) whose samples a reader in this process asks for
  every second, as the analysis does: a `zd2` log line per request (a uniform sample above
  1,000 a second per release), read by the access-log collector in this process, as the
  controller would.

Then runs wrk (keep-alive) against each, in every round each case first in turn, and prints the
median and the spread (min-max) of requests/s and p99 over the rounds, the per-round ratios
(managed at rest and during analysis to the plain hand-written HAProxy; at rest to the one with
the same headers; during analysis to the one with the same headers and a per-request log), and the CPU time HAProxy's processes spent per request (from
/proc/PID/stat; steadier than requests/s on a busy machine). The analysed HAProxy's dropped log
lines (`show info` DroppedLogs) are printed too: lines the collector did not read in time.

Needs wrk, haproxy and nginx (`apt-get install -y wrk haproxy nginx-light`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import children, cpu_seconds, round_ratios
from nginx_bench import BACKEND_CONF
from router_bench import need, run_wrk, wait_port
from router_bench import process as router_process

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


SAME_JOB = HAND_WRITTEN.replace(
    "  default_backend be\n",
    "  http-request set-header X-Forwarded-Proto http\n  default_backend be\n",
)
"""The hand-written configuration passing the app what zerodown's routers pass it: X-Forwarded-For
and X-Forwarded-Proto (docs/router.md: a client's own X-Forwarded-Proto is replaced)."""

SAME_JOB_LOGGED = (
    SAME_JOB.replace("global\n", "global\n  log ring@hand_log format raw local0\n", 1)
    .replace("defaults\n", "ring hand_log\n  format raw\n  size 4194304\n\ndefaults\n", 1)
    .replace("  default_backend be\n", "  log global\n  option httplog\n  default_backend be\n")
)
"""And a line per request (`option httplog`) into a ring nobody reads: the cheapest per-request
log HAProxy has, what production configurations keep on at all times."""


def process(
    argv: list[str], log: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """A process in a session of its own, as the driver starts its HAProxy."""
    return router_process(argv, log, own_session=True)


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):,.2f} ({min(values):,.2f}-{max(values):,.2f})"


AT_REST, ANALYSIS, HAND = "managed, at rest", "managed, analysis", "hand-written"
SAME, SAME_LOGGED = "by hand, same headers", "by hand, same, logged"


async def managed_haproxy(d: Path, name: str, port: int) -> ManagedHaproxy:
    spec = Spec.model_validate(
        {
            "service": "bench",
            "run": {"command": ["app"]},
            "router": {"kind": "haproxy", "listen": f"127.0.0.1:{port}"},
        }
    )
    (d / name).mkdir()
    paths = Paths.for_spec(d / name / "zerodown.yaml")
    paths.ensure()
    router = ManagedHaproxy(paths=paths, spec=spec)
    await router.start()
    return router


async def read_samples(router: ManagedHaproxy) -> None:
    """What the analysis does while a canary runs: ask for the recent samples every second."""
    while True:
        await router.samples("v2", time.time() - 1)
        await asyncio.sleep(1)


async def bench(args: argparse.Namespace) -> None:
    nginx, haproxy = need("nginx"), need("haproxy")
    need("wrk")
    with (
        tempfile.TemporaryDirectory(prefix="zerodown-bench-haproxy-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        d = Path(tmp)
        ports = {
            name: free_port() for name in ("v1", "v2", HAND, SAME, SAME_LOGGED, AT_REST, ANALYSIS)
        }
        (d / "backend.conf").write_text(
            BACKEND_CONF.format(dir=d, port1=ports["v1"], port2=ports["v2"])
        )
        (d / "hand.cfg").write_text(HAND_WRITTEN.format(port=ports[HAND], backend=ports["v1"]))
        nginx_argv = [nginx, "-p", str(d), "-g", "daemon off;", "-c", str(d / "backend.conf")]
        stack.enter_context(process(nginx_argv, d / "backend.log"))
        (d / "same.cfg").write_text(SAME_JOB.format(port=ports[SAME], backend=ports["v1"]))
        (d / "logged.cfg").write_text(
            SAME_JOB_LOGGED.format(port=ports[SAME_LOGGED], backend=ports["v1"])
        )
        by_hand = {
            name: stack.enter_context(process([haproxy, "-f", str(d / cfg)], d / f"{cfg}.log"))
            for name, cfg in ((HAND, "hand.cfg"), (SAME, "same.cfg"), (SAME_LOGGED, "logged.cfg"))
        }
        rest = await managed_haproxy(d, "rest", ports[AT_REST])
        analysed = await managed_haproxy(d, "analysis", ports[ANALYSIS])
        reader: asyncio.Task[None] | None = None
        try:
            v1 = Backend(f"127.0.0.1:{ports['v1']}", "v1-0")
            v2 = Backend(f"127.0.0.1:{ports['v2']}", "v2-0")
            await rest.apply(RouteTable(1, (Pool("v1", 100, (v1,)),)))
            await analysed.apply(RouteTable(1, (Pool("v1", 90, (v1,)), Pool("v2", 10, (v2,)))))
            reader = asyncio.create_task(read_samples(analysed))
            for port in ports.values():
                wait_port(port)
            cases = {name: ports[name] for name in (HAND, SAME, SAME_LOGGED, AT_REST, ANALYSIS)}
            results: dict[str, list[tuple[float, float, float]]] = {c: [] for c in cases}
            cpu: dict[str, list[float]] = {c: [] for c in cases}  # µs of HAProxy CPU per request
            masters = {AT_REST: rest.pid(), ANALYSIS: analysed.pid()}

            def haproxy_cpu(name: str) -> float:
                if name in by_hand:
                    return cpu_seconds(by_hand[name].pid)
                master = masters[name]
                assert master is not None
                return sum(cpu_seconds(pid) for pid in [master, *children(master)])

            for port in cases.values():  # warm up connection pools
                await asyncio.to_thread(
                    run_wrk, f"http://127.0.0.1:{port}/", duration=1, connections=args.connections
                )
            for n in range(args.rounds):
                first = n % len(cases)  # each case first in turn
                order = list(cases)[first:] + list(cases)[:first]
                for name in order:
                    before = haproxy_cpu(name)
                    r = await asyncio.to_thread(
                        run_wrk,
                        f"http://127.0.0.1:{cases[name]}/",
                        duration=args.duration,
                        connections=args.connections,
                    )
                    results[name].append(r)
                    cpu[name].append((haproxy_cpu(name) - before) / (r[0] * args.duration) * 1e6)
                    print(
                        f"  round {n + 1} {name}: {r[0]:,.0f} req/s, p99 {r[2]:.2f} ms,"
                        f" HAProxy CPU {cpu[name][-1]:.1f} µs/request",
                        file=sys.stderr,
                        flush=True,
                    )
            info = await analysed.api.command("show info")
            dropped = next(
                (
                    ln.split(":")[1].strip()
                    for ln in info.splitlines()
                    if ln.startswith("DroppedLogs")
                ),
                "?",
            )
            logged = sum(s.requests for s in (await analysed.stats()).values())
            lines, weights = analysed.access.received, dict(analysed.sampler.weights)
            rest_logged = rest.access.received
            switches = (rest.log_switch.on, analysed.log_switch.on)
        finally:
            if reader is not None:
                reader.cancel()
            for router in (rest, analysed):
                await router.stop(grace=5)
                await router.aclose()

    print(
        f"\nwrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds (each case first"
        " in turn), median (min-max); HAProxy's default threads in all"
    )
    print(f"{'case':<22} {'requests/s':>28} {'p99 ms':>22} {'HAProxy CPU µs/request':>24}")
    for name, rs in results.items():
        print(
            f"{name:<22} {summary([r[0] for r in rs]):>28} {summary([r[2] for r in rs]):>22}"
            f" {summary(cpu[name]):>24}"
        )
    for name, base in ((AT_REST, HAND), (ANALYSIS, HAND), (AT_REST, SAME), (ANALYSIS, SAME_LOGGED)):
        rps, p99 = round_ratios(results[name], results[base])
        print(
            f"{name} / {base}, per round: {statistics.median(rps):.3f}x requests/s"
            f" ({rps[0]:.2f}-{rps[-1]:.2f}), {statistics.median(p99):.2f}x p99"
            f" ({p99[0]:.2f}-{p99[-1]:.2f})"
        )
    print(
        f"log on (at rest, analysis): {switches}; lines at rest: {rest_logged:,};"
        f" analysis: {logged:,} requests counted (estimated) from {lines:,} lines,"
        f" {dropped} lines dropped by HAProxy; sampling weights at the end: {weights}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=50, help="wrk connections")
    p.add_argument("--rounds", type=int, default=5, help="rounds, each runs both cases")
    asyncio.run(bench(p.parse_args()))


if __name__ == "__main__":
    main()
